//! Amounts of money, checked once where they enter: after that an [`Amount`] is known to
//! be a positive number of minor units within the service's maximum.

use super::DomainError;

/// A positive amount in minor units of its currency (200 is 2.00 USD, 200 is 200 JPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    /// The largest amount a session may ask for unless configured otherwise:
    /// 999,999.99 in a currency of two decimals.
    pub const DEFAULT_MAX: i64 = 99_999_999;

    /// `minor` if it is positive and at most `max`; the error names the `amount` field.
    pub fn new(minor: i64, max: i64) -> Result<Self, DomainError> {
        if minor <= 0 {
            return Err(DomainError::invalid(
                "amount",
                "must be a positive integer of minor units (200 is 2.00 USD)",
            ));
        }
        if minor > max {
            return Err(DomainError::invalid(
                "amount",
                format!("must be at most {max}"),
            ));
        }
        Ok(Amount(minor))
    }

    pub fn minor(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Amount {
    type Error = DomainError;

    /// Within [`Amount::DEFAULT_MAX`].
    fn try_from(minor: i64) -> Result<Self, DomainError> {
        Amount::new(minor, Amount::DEFAULT_MAX)
    }
}

impl From<Amount> for i64 {
    fn from(amount: Amount) -> i64 {
        amount.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_amounts_within_the_maximum_are_amounts() {
        assert_eq!(Amount::try_from(1).map(Amount::minor).ok(), Some(1));
        assert_eq!(
            Amount::try_from(Amount::DEFAULT_MAX).map(i64::from).ok(),
            Some(Amount::DEFAULT_MAX)
        );
        for bad in [0, -1, i64::MIN, Amount::DEFAULT_MAX + 1, i64::MAX] {
            let refused = Amount::try_from(bad).unwrap_err().to_string();
            assert!(refused.starts_with("amount: must be"), "{bad}: {refused}");
        }
        assert!(Amount::new(500, 499).is_err());
        assert!(Amount::new(499, 499).is_ok());
    }
}
