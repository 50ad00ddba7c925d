//! Errors of the diffusion core. Messages are lower-case and carry the bad value.

/// Why a schedule, a spacing or a diffusion could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// The number of diffusion steps T is not usable.
    #[error("the number of diffusion steps must be at least {min}, got {got}")]
    TooFewSteps { min: usize, got: usize },
    /// A beta outside (0, 1].
    #[error("beta_{index} must be in (0, 1], got {value}")]
    BetaOutOfRange { index: usize, value: f64 },
    /// A schedule parameter outside its domain.
    #[error("{name} must be {expected}, got {value}")]
    BadParameter { name: &'static str, expected: &'static str, value: f64 },
    /// User-given betas whose count disagrees with T.
    #[error("custom betas have {got} entries but the number of steps is {expected}")]
    BetaCount { expected: usize, got: usize },
    /// An unknown schedule name.
    #[error(
        "unknown beta schedule {0:?}; expected one of linear, cosine, quadratic, sigmoid, constant, jsd, custom"
    )]
    UnknownSchedule(String),
    /// A spacing string that cannot be parsed or cannot be realised.
    #[error("bad timestep spacing {spec:?}: {reason}")]
    BadSpacing { spec: String, reason: String },
    /// Kept timesteps that are not strictly increasing indices below T.
    #[error("kept timesteps must be strictly increasing and below T = {t}, got {got:?}")]
    BadKeptSteps { t: usize, got: Vec<usize> },
    /// A combination of options that has no meaning.
    #[error("{0}")]
    Incompatible(String),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
