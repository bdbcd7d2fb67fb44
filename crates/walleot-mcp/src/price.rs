//! Prices as people write them ("0.50", "USD"), held as exact integer minor units.

use serde_json::{json, Value};
use walleot_api::Currency;

/// The price of one call of a tool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Price {
    /// In the currency's minor unit: 19 for 0.19 USD, 500 for 500 JPY.
    pub minor: i64,
    pub currency: Currency,
    /// The most a call costs rather than what it costs: the payer approves this much,
    /// and the tool's result names what it used ([`with_cost`]), which is all that is
    /// captured.
    #[serde(default)]
    pub up_to: bool,
}

/// The `_meta` key of a tool result that names what the call used, in minor units.
pub const COST_META: &str = "walleot/cost";

/// Names what a call of a tool priced "up to" ([`crate::Walleot::price_up_to`]) used,
/// in minor units of its price's currency: only that is captured (at most the price;
/// 0 captures nothing). A result without it costs the whole price; a tool with a fixed
/// price costs its price whatever it names.
pub fn with_cost(
    mut result: rmcp::model::CallToolResult,
    minor: i64,
) -> rmcp::model::CallToolResult {
    result
        .meta
        .get_or_insert_with(Default::default)
        .0
        .insert(COST_META.into(), json!(minor));
    result
}

/// What a call whose result is `result` (as kept, JSON) is charged: the price, or,
/// for an "up to" price, what the result names within it; `0` charges nothing.
pub fn charge_for(price: &Price, result: &Value) -> i64 {
    if !price.up_to {
        return price.minor;
    }
    match result["_meta"][COST_META].as_i64() {
        Some(cost) => cost.clamp(0, price.minor),
        None => price.minor,
    }
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
        Ok(Price {
            minor,
            currency,
            up_to: false,
        })
    }

    /// `0.19 USD`, or `up to 0.19 USD`.
    pub fn display(&self) -> String {
        let amount = self.currency.format_amount(self.minor);
        if self.up_to {
            format!("up to {amount}")
        } else {
            amount
        }
    }

    /// The amount in major units as a decimal string: `0.19`.
    pub fn major_text(&self) -> String {
        self.currency
            .format_amount(self.minor)
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

    /// What tools/list shows in a priced tool's `_meta`: `{"amount":0.19,"currency":"USD"}`,
    /// with `"upTo": true` for an "up to" price.
    pub fn meta(&self) -> Value {
        let mut meta = json!({"amount": self.major_number(), "currency": self.currency.code().to_ascii_uppercase()});
        if self.up_to {
            meta["upTo"] = json!(true);
        }
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_up_to_price_charges_what_the_result_names_within_it() {
        let fixed = Price::parse("0.50", "USD").unwrap();
        let up_to = Price {
            up_to: true,
            ..fixed.clone()
        };
        let named = |cost: Value| json!({"content": [], "_meta": {COST_META: cost}});
        assert_eq!(charge_for(&fixed, &named(json!(12))), 50, "a fixed price");
        assert_eq!(charge_for(&up_to, &named(json!(12))), 12);
        assert_eq!(charge_for(&up_to, &named(json!(0))), 0);
        assert_eq!(charge_for(&up_to, &named(json!(-3))), 0);
        assert_eq!(charge_for(&up_to, &named(json!(51))), 50);
        assert_eq!(
            charge_for(&up_to, &json!({"content": []})),
            50,
            "none named"
        );
        assert_eq!(charge_for(&up_to, &named(json!("12"))), 50, "not a number");
        assert_eq!(up_to.display(), "up to 0.50 USD");
        assert_eq!(up_to.major_text(), "0.50");
    }

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
