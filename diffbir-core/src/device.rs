//! Choosing a burn [`Device`] from a name such as `cpu`, `wgpu` or `cuda:1`.
//!
//! Library crates enable no backend; which names work depends on the cargo features the final
//! binary was built with (`flex`, `wgpu`, `vulkan`, `cuda`). A name whose backend is missing
//! gives [`Error::BackendNotCompiled`], naming the feature to enable.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{Error, Result};

/// A parsed device name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The portable CPU backend (`cpu` or `flex`).
    Flex,
    /// wgpu with its automatic graphics API choice (`wgpu`, or `wgpu:N` for the N-th
    /// discrete GPU).
    Wgpu(Option<usize>),
    /// wgpu pinned to Vulkan (`vulkan`, `vulkan:N`).
    Vulkan(Option<usize>),
    /// An NVIDIA GPU through CUDA (`cuda` = `cuda:0`, `cuda:N`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let (kind, index) = match lower.split_once(':') {
            Some((kind, index)) => {
                let index = index.parse::<usize>().map_err(|_| Error::UnknownDevice {
                    name: name.to_string(),
                })?;
                (kind, Some(index))
            }
            None => (lower.as_str(), None),
        };
        match (kind, index) {
            ("cpu" | "flex", None) => Ok(Self::Flex),
            ("wgpu", index) => Ok(Self::Wgpu(index)),
            ("vulkan", index) => Ok(Self::Vulkan(index)),
            ("cuda", index) => Ok(Self::Cuda(index.unwrap_or(0))),
            _ => Err(Error::UnknownDevice {
                name: name.to_string(),
            }),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flex => f.write_str("flex"),
            Self::Wgpu(None) => f.write_str("wgpu"),
            Self::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            Self::Vulkan(None) => f.write_str("vulkan"),
            Self::Vulkan(Some(i)) => write!(f, "vulkan:{i}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// The cargo feature that compiles this device's backend in.
    pub fn feature(&self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Wgpu(_) => "wgpu",
            Self::Vulkan(_) => "vulkan",
            Self::Cuda(_) => "cuda",
        }
    }

    /// Whether this build has the backend.
    pub fn is_compiled(&self) -> bool {
        match self {
            Self::Flex => cfg!(feature = "flex"),
            Self::Wgpu(_) => cfg!(feature = "wgpu"),
            Self::Vulkan(_) => cfg!(feature = "vulkan"),
            Self::Cuda(_) => cfg!(feature = "cuda"),
        }
    }

    /// Opens the device.
    ///
    /// GPU devices are looked up first, so a machine without one gets
    /// [`Error::DeviceUnavailable`] instead of a panic inside the backend.
    pub fn device(&self) -> Result<Device> {
        if !self.is_compiled() {
            return Err(Error::BackendNotCompiled {
                name: self.to_string(),
                feature: self.feature(),
            });
        }
        self.open()
    }

    #[allow(unreachable_code, unused_variables)]
    fn open(&self) -> Result<Device> {
        match *self {
            Self::Flex => {
                #[cfg(feature = "flex")]
                return Ok(Device::flex());
            }
            Self::Wgpu(index) => {
                #[cfg(feature = "wgpu")]
                return self.open_listed(burn::tensor::DeviceType::Wgpu, index, |kind| {
                    Device::wgpu(kind)
                });
            }
            Self::Vulkan(index) => {
                #[cfg(feature = "vulkan")]
                return self.open_listed(burn::tensor::DeviceType::Vulkan, index, |kind| {
                    Device::vulkan(kind)
                });
            }
            Self::Cuda(index) => {
                #[cfg(feature = "cuda")]
                {
                    let found = Device::enumerate(burn::tensor::DeviceType::Cuda)
                        .into_vec()
                        .len();
                    if index >= found {
                        return Err(self.unavailable(found));
                    }
                    return Ok(Device::cuda(index));
                }
            }
        }
        Err(Error::BackendNotCompiled {
            name: self.to_string(),
            feature: self.feature(),
        })
    }

    #[cfg(any(feature = "wgpu", feature = "vulkan"))]
    fn open_listed(
        &self,
        kind: burn::tensor::DeviceType,
        index: Option<usize>,
        open: impl Fn(burn::tensor::DeviceKind) -> Device,
    ) -> Result<Device> {
        use burn::tensor::DeviceKind;
        let found = Device::enumerate(kind).into_vec().len();
        match index {
            None if found > 0 => Ok(open(DeviceKind::DefaultDevice)),
            Some(i) if i < found => Ok(open(DeviceKind::DiscreteGpu(i))),
            _ => Err(self.unavailable(found)),
        }
    }

    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
    fn unavailable(&self, found: usize) -> Error {
        Error::DeviceUnavailable {
            name: self.to_string(),
            reason: format!(
                "{found} such device(s) found on this machine; check the driver, or use `cpu`"
            ),
        }
    }
}

/// Parses a device name and opens it: `parse_device("cuda:1")`.
pub fn parse_device(name: &str) -> Result<Device> {
    name.parse::<DeviceSpec>()?.device()
}

/// The memory a restoration may plan for on `device`, in bytes.
///
/// - On the CPU (`flex`): the RAM the system reports available now (free, and caches it can
///   drop).
/// - On a GPU: the adapter's memory as its runtime reports it. That is the largest
///   device-local heap under `vulkan` (system RAM on an integrated or software adapter), or
///   the card's memory under `cuda`.
///
/// `None` where neither is known: `wgpu` (its WGSL compiler's runtime asks the driver for no
/// memory size, on any graphics API). Opens a GPU device's runtime.
pub fn available_memory(device: &Device) -> Option<u64> {
    use burn::backend::DispatchDevice;
    let bytes = match device.as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => {
            let mut system = sysinfo::System::new();
            system.refresh_memory();
            Some(system.available_memory())
        }
        #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
        DispatchDevice::Cube(device) => device.client().properties().memory.max_memory(),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    bytes.filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Flex);
        assert_eq!("FLEX".parse::<DeviceSpec>().unwrap(), DeviceSpec::Flex);
        assert_eq!(
            "wgpu".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Wgpu(None)
        );
        assert_eq!(
            "wgpu:1".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Wgpu(Some(1))
        );
        assert_eq!(
            "vulkan:0".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Vulkan(Some(0))
        );
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
    }

    #[test]
    fn the_cpu_reports_the_available_ram() {
        let ram = available_memory(&Device::flex()).expect("the system's available RAM");
        assert!(ram > 1 << 20, "{ram} bytes");
    }

    /// Run with `--features vulkan` on a machine with a Vulkan driver (Mesa's lavapipe will
    /// do).
    #[cfg(feature = "vulkan")]
    #[test]
    fn a_vulkan_adapter_reports_its_memory() {
        let device = DeviceSpec::Vulkan(None).device().expect("a Vulkan adapter");
        let memory = available_memory(&device).expect("the adapter's device-local heap");
        assert!(memory > 1 << 20, "{memory} bytes");
    }

    #[test]
    fn rejects_unknown_names() {
        for bad in ["", "gpu", "cuda:x", "cpu:1", "cuda:-1"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(matches!(err, Error::UnknownDevice { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn flex_opens_in_tests() {
        assert!(parse_device("cpu").is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn missing_backend_names_the_feature() {
        let err = parse_device("cuda:0").unwrap_err();
        assert!(matches!(
            err,
            Error::BackendNotCompiled {
                feature: "cuda",
                ..
            }
        ));
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }
}
