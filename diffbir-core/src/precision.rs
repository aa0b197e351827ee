//! Float precision of inference: weights are loaded in f32 and cast afterwards.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Tensor};

use crate::error::{Error, Result};

crate::named_enum! {
    /// The float type a model computes in.
    #[derive(Default)]
    pub enum Precision ("precision") {
        /// 32-bit floats (the default: highest precision, the reference's numbers).
        #[default]
        F32 = "f32" | "fp32",
        /// IEEE half precision.
        F16 = "f16" | "fp16",
        /// bfloat16.
        Bf16 = "bf16",
    }
}

impl Precision {
    /// The burn dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }

    /// Checks that `device` computes in this precision (some GPU backends lack bf16 and
    /// would otherwise return garbage).
    pub fn check(self, device: &Device) -> Result<()> {
        if self == Self::F32 || device.supports_dtype(self.dtype()) {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "{self:?} is not supported by device {device:?}; use f32{}",
                if self == Self::Bf16 { " or f16" } else { "" }
            )))
        }
    }
}

struct CastFloats(DType);

impl ModuleMapper for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        if param.val().dtype() == dtype {
            return param;
        }
        param.map(|t| t.cast(dtype))
    }
}

/// Casts every float parameter of a module to `precision` (integer buffers are left alone).
/// Casting to f32 restores full precision.
pub fn cast_module<M: Module>(module: M, precision: Precision) -> M {
    module.map(&mut CastFloats(precision.dtype()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn casts_parameters_and_computes_close_to_f32() {
        let device = Device::flex();
        let linear: Linear = LinearConfig::new(8, 4).init(&device);
        let x = Tensor::<2>::ones([2, 8], &device);
        let reference = linear.forward(x.clone());
        let half = cast_module(linear, Precision::F16);
        assert_eq!(half.weight.val().dtype(), DType::F16);
        let y = half.forward(x.cast(DType::F16)).cast(DType::F32);
        let err: f32 = (y - reference).abs().max().into_scalar();
        assert!(err < 1e-2, "{err}");
        assert!("fp16".parse::<Precision>().unwrap() == Precision::F16);
        assert!("f64".parse::<Precision>().is_err());
        Precision::Bf16.check(&device).unwrap();
    }
}
