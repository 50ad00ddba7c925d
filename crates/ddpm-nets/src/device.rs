//! The one parser of device arguments (`--device`, `train.device`): "auto" (CUDA when this
//! binary can use it), "cpu", "cuda" or "cuda:N". Asking for CUDA where this binary cannot use
//! it is an error here, not a crash at the first tensor.

use tch::Device;

/// The device named by `s`; `what` names the argument in errors (e.g. "--device").
pub fn parse_device(s: &str, what: &str) -> Result<Device, String> {
    let device = match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("{what} must be auto, cpu, cuda or cuda:N, got {s:?}"))?,
    };
    if let Device::Cuda(i) = device {
        if !tch::Cuda::is_available() {
            return Err(format!(
                "{what} {s}: CUDA is not available to this binary (see `cargo xtask doctor`)"
            ));
        }
        let count = tch::Cuda::device_count() as usize;
        if i >= count {
            return Err(format!("{what} {s}: this machine has {count} CUDA device(s)"));
        }
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_ones_name_the_argument() {
        assert_eq!(parse_device("cpu", "--device"), Ok(Device::Cpu));
        let auto = parse_device("auto", "--device").unwrap();
        assert_eq!(auto.is_cuda(), tch::Cuda::is_available());
        let e = parse_device("tpu", "--device").unwrap_err();
        assert_eq!(e, "--device must be auto, cpu, cuda or cuda:N, got \"tpu\"");
        if !tch::Cuda::is_available() {
            let e = parse_device("cuda:0", "train.device").unwrap_err();
            assert!(e.starts_with("train.device cuda:0: CUDA is not available"), "{e}");
        }
    }
}
