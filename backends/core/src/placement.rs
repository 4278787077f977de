//! Placement: how the config file sets a backend up for one variant ([`BackendSettings`]: its own
//! options, the [`Device`] it runs on and the [`DType`] it computes in), and the checks backends
//! share to refuse what they cannot run.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backend::BackendError;

/// How the config file sets a backend up: its own options, where it runs and in which format.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendSettings {
    /// The backend's own options from the config file (`options = { ... }`).
    #[serde(default)]
    pub options: serde_json::Value,
    /// Where to run.
    #[serde(default)]
    pub device: Device,
    /// The number format to compute in; `None`: the backend's default.
    #[serde(default)]
    pub dtype: Option<DType>,
}

impl BackendSettings {
    /// Decodes the backend's `options` into `T` (its defaults when there are none).
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] naming the option when `T` refuses it (unknown key, wrong type).
    pub fn options<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, BackendError> {
        if self.options.is_null() {
            return Ok(T::default());
        }
        serde_json::from_value(self.options.clone())
            .map_err(|e| BackendError::Load(format!("bad backend options: {e}")))
    }

    /// Checks that `backend`, which runs on the CPU only, is asked for the CPU.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] saying so for any other device.
    pub fn require_cpu(&self, backend: &str) -> Result<(), BackendError> {
        match self.device {
            Device::Cpu => Ok(()),
            other => Err(BackendError::Load(format!(
                "the {backend} backend runs on the CPU only; device \"{other}\" is not supported"
            ))),
        }
    }

    /// The dtype to compute in: the one asked for when `supported` holds it, else the first of
    /// `supported` when none was asked for.
    ///
    /// # Errors
    ///
    /// [`BackendError::Load`] naming the supported dtypes when the one asked for is not among them.
    pub fn dtype_among(&self, backend: &str, supported: &[DType]) -> Result<DType, BackendError> {
        match self.dtype {
            None => Ok(supported[0]),
            Some(dtype) if supported.contains(&dtype) => Ok(dtype),
            Some(dtype) => {
                let names: Vec<String> = supported.iter().map(DType::to_string).collect();
                Err(BackendError::Load(format!(
                    "the {backend} backend cannot compute in {dtype} on {}; supported: {}",
                    self.device,
                    names.join(", ")
                )))
            }
        }
    }
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host's CPU.
    #[default]
    Cpu,
    /// CUDA GPU number N.
    Cuda(u32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl FromStr for Device {
    type Err = String;

    /// Parses `"cpu"`, `"cuda"` (GPU 0) or `"cuda:N"`.
    fn from_str(text: &str) -> Result<Self, String> {
        let index = |n: &str| n.parse::<u32>().ok();
        match text {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(index)
                .map(Device::Cuda)
                .ok_or_else(|| {
                    format!("device must be \"cpu\", \"cuda\" or \"cuda:N\", got {text:?}")
                }),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The number format a model computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit integer (quantized).
    Int8,
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::Int8 => "int8",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(Device::Cuda(3)));
        assert!("gpu".parse::<Device>().unwrap_err().contains("\"gpu\""));
        assert!("cuda:x".parse::<Device>().is_err());
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    }

    #[test]
    fn placement_refusals_say_what_is_supported() {
        let mut settings = BackendSettings::default();
        assert_eq!(settings.dtype_among("x", &[DType::F32]), Ok(DType::F32));
        settings.dtype = Some(DType::F16);
        let err = settings.dtype_among("candle", &[DType::F32]).unwrap_err();
        assert!(
            err.to_string()
                .contains("candle backend cannot compute in f16 on cpu; supported: f32"),
            "{err}"
        );
        settings.device = Device::Cuda(0);
        let err = settings.require_cpu("onnx").unwrap_err();
        assert!(err.to_string().contains("\"cuda:0\""), "{err}");
    }
}
