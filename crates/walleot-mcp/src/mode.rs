//! How server and client coordinate a payment.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// The tool answers with the payment link and id; a companion tool
    /// `confirm_<tool>_payment(payment_id)` checks the payment and runs the call.
    #[default]
    TwoStep,
    /// The tool gains an optional `payment_id` argument: the first call answers an
    /// error with link and id; the retry with the id runs the tool once paid.
    Resubmit,
    /// The server streams the link in progress notifications while it waits for the
    /// payer, then runs the tool in the same call. Without a progress token the call
    /// falls back to two steps.
    Progress,
    /// The server asks the client, through MCP elicitation, to show the link (URL mode
    /// where the client declares it, else a form) and waits for the payer. Clients
    /// without elicitation get two steps.
    Elicitation,
    /// The confirm tool appears, for the paying session only, while its payment is open,
    /// announced with `notifications/tools/list_changed`.
    DynamicTools,
    /// Per client: elicitation where the client declares it, else two steps.
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::TwoStep => "two-step",
            Mode::Resubmit => "resubmit",
            Mode::Progress => "progress",
            Mode::Elicitation => "elicitation",
            Mode::DynamicTools => "dynamic-tools",
            Mode::Auto => "auto",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    /// Accepts `two-step`, `two_step` and `TWO_STEP` alike.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "two-step" => Ok(Mode::TwoStep),
            "resubmit" => Ok(Mode::Resubmit),
            "progress" => Ok(Mode::Progress),
            "elicitation" => Ok(Mode::Elicitation),
            "dynamic-tools" => Ok(Mode::DynamicTools),
            "auto" => Ok(Mode::Auto),
            other => Err(format!(
                "unknown mode `{other}`; expected two-step, resubmit, elicitation, progress, dynamic-tools or auto"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_in_the_spellings_of_every_sdk() {
        for raw in ["two-step", "TWO_STEP", "two_step"] {
            assert_eq!(raw.parse::<Mode>(), Ok(Mode::TwoStep));
        }
        assert_eq!("RESUBMIT".parse::<Mode>(), Ok(Mode::Resubmit));
        assert_eq!("DYNAMIC_TOOLS".parse::<Mode>(), Ok(Mode::DynamicTools));
        assert_eq!("dynamic-tools".parse::<Mode>(), Ok(Mode::DynamicTools));
        assert!("teleport".parse::<Mode>().is_err());
        for mode in [
            Mode::TwoStep,
            Mode::Resubmit,
            Mode::Elicitation,
            Mode::Progress,
            Mode::DynamicTools,
            Mode::Auto,
        ] {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
        }
    }
}
