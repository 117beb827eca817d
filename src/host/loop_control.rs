//! The controls of a running training loop that a checkpoint carries beside the optimizer's
//! state: the plateau reduction's options and where it stands.
//!
//! Saved as one JSON metadata entry, `training_loop`, absent when no control is set.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::plateau::{Plateau, PlateauState};

/// A plateau reduction as saved: its options and its state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlateau {
    /// `ReduceLROnPlateau`'s options.
    pub options: Plateau,
    /// The best metric, the bad epochs and the cooldown left.
    pub state: PlateauState,
}

/// The running-loop controls of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopControl {
    /// The plateau reduction, when one is set.
    pub plateau: Option<SavedPlateau>,
}

impl LoopControl {
    /// Whether no control is set (nothing to save).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the saved options and that the state fits them.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(p) = &self.plateau {
            p.options.validate()?;
            p.options.check_state(&p.state)?;
        }
        Ok(())
    }
}
