//! Checkpoint files (`--*-ckpt`, `diffbir weights verify`, training's `resume`): the
//! container sniffing, safetensors, PyTorch zip / legacy pickle / tar containers, the pickle
//! allow-list scan, the wrapper unwrapping, then every tensor read and converted.
#![no_main]

use diffbir_core::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `.pth`: the extension that lets the sniffer hand anything it does not recognise to the
    // PyTorch reader, the deepest path.
    let path = diffbir_fuzz::write_scratch("checkpoint.pth", data);
    let Ok(ckpt) = Checkpoint::open(&path) else {
        return;
    };
    assert!(!ckpt.is_empty());
    let _ = ckpt.num_float_elements();
    for info in ckpt.infos() {
        let _ = info.num_elements();
        if let Ok(tensor) = ckpt.tensor_data(&info.key) {
            assert_eq!(
                tensor.shape().as_slice(),
                info.shape.as_slice(),
                "{}",
                info.key
            );
        }
    }
});
