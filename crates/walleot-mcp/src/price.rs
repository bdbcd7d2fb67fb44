//! Prices as people write them ("0.50", "USD"), held as exact integer minor units.

use serde_json::{json, Value};
use walleot_api::Currency;

/// The price of one call of a tool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Price {
    /// In the currency's minor unit: 19 for 0.19 USD, 500 for 500 JPY.
    pub minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid price: {0}")]
pub struct PriceError(pub String);

impl Price {
    /// Reads a price in major units without any float: `Price::parse("0.29", "USD")` is
    /// exactly 29 cents; `Price::parse("500", "JPY")` is 500 yen.
    pub fn parse(amount: &str, currency: &str) -> Result<Self, PriceError> {
        let currency: Currency = currency
            .parse()
            .map_err(|e: walleot_api::UnknownCurrency| PriceError(e.to_string()))?;
        let minor = currency.parse_major(amount).map_err(PriceError)?;
        if minor <= 0 {
            return Err(PriceError(format!("`{amount}` is not a positive amount")));
        }
        Ok(Price { minor, currency })
    }

    /// `0.19 USD`.
    pub fn display(&self) -> String {
        self.currency.format_amount(self.minor)
    }

    /// The amount in major units as a decimal string: `0.19`.
    pub fn major_text(&self) -> String {
        self.display()
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The amount in major units as a JSON number (`0.19`), written from the exact
    /// decimal text, for display by clients; `amountMinor` carries the exact figure.
    pub fn major_number(&self) -> Value {
        serde_json::from_str(&self.major_text()).unwrap_or(Value::Null)
    }

    /// What tools/list shows in a priced tool's `_meta`: `{"amount":0.19,"currency":"USD"}`.
    pub fn meta(&self) -> Value {
        json!({"amount": self.major_number(), "currency": self.currency.code().to_ascii_uppercase()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_minor_units() {
        assert_eq!(Price::parse("0.29", "USD").unwrap().minor, 29);
        assert_eq!(Price::parse("0.19", "usd").unwrap().minor, 19);
        assert_eq!(Price::parse("0.50", "USD").unwrap().minor, 50);
        assert_eq!(Price::parse("500", "JPY").unwrap().minor, 500);
        for (amount, currency) in [
            ("0", "USD"),
            ("0.001", "USD"),
            ("1.5", "JPY"),
            ("-1", "USD"),
            ("1", "XYZ"),
            ("abc", "USD"),
        ] {
            assert!(
                Price::parse(amount, currency).is_err(),
                "{amount} {currency}"
            );
        }
    }

    #[test]
    fn meta_shows_the_amount_in_major_units() {
        assert_eq!(
            Price::parse("0.50", "USD").unwrap().meta(),
            json!({"amount": 0.5, "currency": "USD"})
        );
        assert_eq!(
            Price::parse("500", "JPY").unwrap().meta(),
            json!({"amount": 500, "currency": "JPY"})
        );
        assert_eq!(Price::parse("0.19", "USD").unwrap().display(), "0.19 USD");
    }
}
