//! `--backend`: the burn device chosen at run time.
//!
//! Each backend is a Cargo feature (`flex`: burn's pure-Rust CPU backend;
//! `tch`: LibTorch; `wgpu`), so a binary holds only the ones it was built with;
//! asking for one that was not compiled in is an error that names the feature
//! and the `just` recipe.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::tensor::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// burn-flex: pure-Rust CPU with threads and SIMD (feature `flex`).
    #[default]
    Flex,
    /// LibTorch on the CPU (feature `tch`).
    Tch,
    /// LibTorch on CUDA device N (feature `tch`).
    TchCuda(usize),
    /// wgpu: Vulkan/Metal/DX12 GPUs, or a software driver (feature `wgpu`).
    Wgpu,
}

pub const BACKEND_NAMES: &str = "auto, flex, tch, tch-cuda[:N], wgpu";

impl FromStr for Backend {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Self::auto(),
            "flex" => Self::Flex,
            "tch" | "tch-cpu" => Self::Tch,
            "tch-cuda" => Self::TchCuda(0),
            "wgpu" => Self::Wgpu,
            other => match other.strip_prefix("tch-cuda:") {
                Some(n) => match n.parse() {
                    Ok(index) => Self::TchCuda(index),
                    Err(_) => bail!("bad CUDA index in backend {other:?} (expected tch-cuda:N)"),
                },
                None => bail!("unknown backend {other:?} (expected one of {BACKEND_NAMES})"),
            },
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flex => write!(f, "flex"),
            Self::Tch => write!(f, "tch"),
            Self::TchCuda(i) => write!(f, "tch-cuda:{i}"),
            Self::Wgpu => write!(f, "wgpu"),
        }
    }
}

impl Backend {
    /// The backend as a run's identity and results name it: which computation,
    /// not where (`tch-cuda:1` computes what `tch-cuda:0` does, so a grid
    /// spread over several GPUs is the grid run on one).
    pub fn identity(&self) -> String {
        match self {
            Self::TchCuda(_) => "tch-cuda".into(),
            other => other.to_string(),
        }
    }

    /// `auto`: LibTorch on the CPU when this binary has it (the faster CPU
    /// backend, see the README's bench), else flex.
    pub fn auto() -> Self {
        if cfg!(feature = "tch") { Self::Tch } else { Self::Flex }
    }

    /// Whether this binary was built with the backend.
    pub fn compiled(&self) -> bool {
        match self {
            Self::Flex => cfg!(feature = "flex"),
            Self::Tch | Self::TchCuda(_) => cfg!(feature = "tch"),
            Self::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// Whether the backend is LibTorch's (CPU or CUDA), where bertfit-tch's
    /// computations run: the fused block, its bfloat16 mixed-precision path,
    /// AdamW in place or fused.
    pub fn is_libtorch(&self) -> bool {
        matches!(self, Self::Tch | Self::TchCuda(_))
    }

    /// Whether the backend has a bfloat16 mixed-precision path (LibTorch's fused block).
    pub fn has_bf16(&self) -> bool {
        self.is_libtorch()
    }

    /// Backends compiled into this binary.
    pub fn available() -> Vec<Backend> {
        [Self::Flex, Self::Tch, Self::Wgpu].into_iter().filter(|b| b.compiled()).collect()
    }

    /// Whether the backend can run here, said in one line before any work:
    /// compiled into this binary, and for CUDA, the device exists.
    pub fn check(&self) -> Result<()> {
        if !self.compiled() {
            return self.device().map(|_| ());
        }
        self.check_libtorch()?;
        self.check_cuda()
    }

    /// For the LibTorch backends: that the LibTorch this process loaded is the
    /// one the binary was built against (another starts, then fails at the
    /// first tensor).
    fn check_libtorch(&self) -> Result<()> {
        if self.is_libtorch() {
            bertfit_tch::libtorch_version::check().map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    /// How many CUDA devices LibTorch sees here (`tch-cuda:all`); 0 without
    /// LibTorch in this binary, a GPU or its driver.
    pub fn cuda_devices() -> Result<usize> {
        Self::TchCuda(0).check_libtorch()?;
        Ok(bertfit_tch::cuda_device_count())
    }

    /// For `tch-cuda:N`: that LibTorch sees CUDA device N.
    fn check_cuda(&self) -> Result<()> {
        if let Self::TchCuda(index) = self {
            let count = bertfit_tch::cuda_device_count();
            if *index >= count {
                let seen =
                    if count == 0 { "no CUDA device (no NVIDIA GPU or driver)".to_string() } else { format!("{count} CUDA devices") };
                bail!("backend {self}: LibTorch sees {seen} here; use --backend tch for its CPU");
            }
        }
        Ok(())
    }

    /// The burn device (without autodiff).
    #[allow(deprecated, unreachable_code)]
    pub fn device(&self) -> Result<Device> {
        match self {
            Self::Flex => {
                #[cfg(feature = "flex")]
                return Ok(Device::flex());
                bail!("backend flex is not compiled into this binary: build with the `flex` feature (`just build`)")
            }
            Self::Tch => {
                #[cfg(feature = "tch")]
                return self.check_libtorch().map(|()| Device::libtorch());
                bail!("backend tch is not compiled into this binary: build with the `tch` feature (`just build-tch`)")
            }
            Self::TchCuda(index) => {
                #[cfg(feature = "tch")]
                return self.check_libtorch().and_then(|()| self.check_cuda()).map(|()| Device::libtorch_cuda(*index));
                let _ = index;
                bail!("backend {self} is not compiled into this binary: build with the `tch` feature (`just build-tch`)")
            }
            Self::Wgpu => {
                #[cfg(feature = "wgpu")]
                return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
                bail!("backend wgpu is not compiled into this binary: build with the `wgpu` feature (`just build-wgpu`)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name() {
        assert_eq!("flex".parse::<Backend>().unwrap(), Backend::Flex);
        assert_eq!("tch".parse::<Backend>().unwrap(), Backend::Tch);
        assert_eq!("tch-cuda".parse::<Backend>().unwrap(), Backend::TchCuda(0));
        assert_eq!("tch-cuda:2".parse::<Backend>().unwrap(), Backend::TchCuda(2));
        assert_eq!("wgpu".parse::<Backend>().unwrap(), Backend::Wgpu);
        assert_eq!(Backend::TchCuda(3).identity(), "tch-cuda");
        assert_eq!("tch-cuda".parse::<Backend>().unwrap().identity(), Backend::TchCuda(1).identity());
        assert_eq!(Backend::Tch.identity(), "tch");
        assert_eq!("auto".parse::<Backend>().unwrap(), if cfg!(feature = "tch") { Backend::Tch } else { Backend::Flex });
        let err = "foo".parse::<Backend>().unwrap_err().to_string();
        assert!(err.contains("unknown backend \"foo\""), "{err}");
    }

    #[test]
    fn cuda_that_is_not_here_is_one_line_before_any_work() {
        let beyond = Backend::TchCuda(bertfit_tch::cuda_device_count());
        let err = format!("{:#}", beyond.check().unwrap_err());
        assert!(err.starts_with(&format!("backend {beyond}")) && !err.contains('\n'), "{err}");
        assert!(Backend::auto().check().is_ok());
    }

    #[test]
    fn missing_backend_names_feature_and_recipe() {
        #[cfg(not(feature = "wgpu"))]
        {
            let err = Backend::Wgpu.device().unwrap_err().to_string();
            assert!(err.contains("`wgpu` feature") && err.contains("just build-wgpu"), "{err}");
        }
        #[cfg(not(feature = "tch"))]
        {
            let err = Backend::Tch.device().unwrap_err().to_string();
            assert!(err.contains("`tch` feature") && err.contains("just build-tch"), "{err}");
        }
    }
}
