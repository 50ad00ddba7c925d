//! When each periodic concern of the training loop is due after a step: the one owner of the
//! intervals of `[train]` (`log_every`, `checkpoint_every`, `sample_every`, `eval_every`) and
//! of what the last step adds. Every rank computes the same answers from the step alone, which
//! is what lets them meet in the same collectives.

use crate::config::TrainConfig;

/// The intervals of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    pub total: u64,
    pub log_every: u64,
    pub checkpoint_every: u64,
    /// 0: a preview at the end only.
    pub sample_every: u64,
    /// 0: no evaluation.
    pub eval_every: u64,
}

/// What is due after one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// The run's last step.
    pub at_end: bool,
    /// A metrics line (and the one host read of the interval's sums).
    pub log: bool,
    /// A scheduled checkpoint (signals and the timed checkpoint add their own).
    pub checkpoint: bool,
    pub preview: bool,
    pub eval: bool,
}

impl Due {
    /// Whether the ranks agree on stopping and on the timed checkpoint after this step (an
    /// all-reduce and a host read, so only at steps that read the host anyway).
    pub fn agree(&self) -> bool {
        self.log || self.checkpoint
    }
}

impl Intervals {
    pub fn of(t: &TrainConfig) -> Self {
        Self {
            total: t.total_steps,
            log_every: t.log_every,
            checkpoint_every: t.checkpoint_every,
            sample_every: t.sample_every,
            eval_every: t.eval_every,
        }
    }

    /// What is due after step `step` (1-based: the number of updates taken).
    pub fn at(&self, step: u64) -> Due {
        let at_end = step == self.total;
        let every = |n: u64| n > 0 && step.is_multiple_of(n);
        Due {
            at_end,
            log: every(self.log_every) || at_end,
            checkpoint: every(self.checkpoint_every) || at_end,
            preview: every(self.sample_every) || at_end,
            eval: self.eval_every > 0 && (every(self.eval_every) || at_end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_concern_is_due_at_its_multiples_and_everything_at_the_end() {
        let i = Intervals {
            total: 25,
            log_every: 5,
            checkpoint_every: 10,
            sample_every: 0,
            eval_every: 20,
        };
        let steps = |f: fn(&Due) -> bool| (1..=25).filter(|&s| f(&i.at(s))).collect::<Vec<u64>>();
        assert_eq!(steps(|d| d.log), vec![5, 10, 15, 20, 25]);
        assert_eq!(steps(|d| d.checkpoint), vec![10, 20, 25]);
        assert_eq!(steps(|d| d.preview), vec![25], "sample_every = 0: the end only");
        assert_eq!(steps(|d| d.eval), vec![20, 25]);
        assert_eq!(steps(|d| d.agree()), vec![5, 10, 15, 20, 25]);
        let never = Intervals { eval_every: 0, ..i };
        assert!(!never.at(25).eval, "eval_every = 0: never");
    }
}
