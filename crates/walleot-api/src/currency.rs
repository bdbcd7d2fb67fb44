use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An active ISO 4217 currency with its minor-unit exponent.
///
/// Parsing accepts any case and keeps the code lower case, as the API answers it.
/// Funds codes without a minor unit (XAU, XDR, XXX…) are not currencies a payer holds,
/// so they are not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Upper-case codes and their exponents. Codes absent here have two decimals.
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
const THREE_DECIMAL: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const FOUR_DECIMAL: &[&str] = &["CLF", "UYW"];

/// Every active ISO 4217 code that has a minor unit.
pub(crate) const CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK",
    "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD",
    "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD",
    "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT",
    "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP",
    "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST",
    "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

impl Currency {
    pub const USD: Currency = Currency {
        code: *b"usd",
        exponent: 2,
    };

    /// The lower-case code, as the API writes it.
    pub fn code(&self) -> &str {
        // The bytes are always lower-case ASCII letters: see `from_str`.
        std::str::from_utf8(&self.code).unwrap_or("xxx")
    }

    /// Digits after the decimal point of the major unit: 2 for USD, 0 for JPY, 3 for KWD.
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// How many minor units make one major unit (100 for USD, 1 for JPY).
    pub fn minor_per_major(&self) -> i64 {
        10_i64.pow(u32::from(self.exponent))
    }

    /// Reads an amount written in major units (`"0.50"`, `"2"`, `"1.999"` for KWD) as
    /// minor units, exactly: no float is involved, and more decimals than the currency
    /// has are refused rather than rounded.
    pub fn parse_major(&self, raw: &str) -> Result<i64, String> {
        let raw = raw.trim();
        let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (raw.contains('.') && !digits(fraction)) {
            return Err(format!("`{raw}` is not an amount like 0.50"));
        }
        let exponent = usize::from(self.exponent);
        if fraction.len() > exponent {
            return Err(format!(
                "{} has {exponent} decimal places; `{raw}` has more",
                self.code().to_ascii_uppercase()
            ));
        }
        let whole: i64 = whole.parse().map_err(|_| format!("`{raw}` is too large"))?;
        let fraction: i64 = if fraction.is_empty() {
            0
        } else {
            format!("{fraction:0<exponent$}")
                .parse()
                .map_err(|_| format!("`{raw}` is malformed"))?
        };
        whole
            .checked_mul(self.minor_per_major())
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(|| format!("`{raw}` is too large"))
    }

    /// Writes an amount of minor units for people: `1.99 USD`, `500 JPY`, `-0.05 EUR`.
    pub fn format_amount(&self, minor: i64) -> String {
        let code = self.code().to_ascii_uppercase();
        if self.exponent == 0 {
            return format!("{minor} {code}");
        }
        let per = self.minor_per_major().unsigned_abs();
        let abs = minor.unsigned_abs();
        let sign = if minor < 0 { "-" } else { "" };
        format!(
            "{sign}{}.{:0width$} {code}",
            abs / per,
            abs % per,
            width = usize::from(self.exponent)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCurrency(pub String);

impl fmt::Display for UnknownCurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an ISO 4217 currency code with a minor unit (for example \"usd\")",
            self.0
        )
    }
}

impl std::error::Error for UnknownCurrency {}

impl FromStr for Currency {
    type Err = UnknownCurrency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        if !CODES.contains(&upper.as_str()) {
            return Err(UnknownCurrency(s.to_string()));
        }
        let exponent = if ZERO_DECIMAL.contains(&upper.as_str()) {
            0
        } else if THREE_DECIMAL.contains(&upper.as_str()) {
            3
        } else if FOUR_DECIMAL.contains(&upper.as_str()) {
            4
        } else {
            2
        };
        let lower = upper.to_ascii_lowercase();
        let bytes = lower.as_bytes();
        Ok(Currency {
            code: [bytes[0], bytes[1], bytes[2]],
            exponent,
        })
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_in_any_case_and_answer_lower_case() {
        for raw in ["usd", "USD", "Usd"] {
            let c: Currency = raw.parse().unwrap();
            assert_eq!(c.code(), "usd");
            assert_eq!(c, Currency::USD);
        }
    }

    #[test]
    fn exponents_follow_iso_4217() {
        let cases = [
            ("usd", 2),
            ("eur", 2),
            ("jpy", 0),
            ("krw", 0),
            ("kwd", 3),
            ("clf", 4),
        ];
        for (code, exponent) in cases {
            assert_eq!(
                code.parse::<Currency>().unwrap().exponent(),
                exponent,
                "{code}"
            );
        }
    }

    #[test]
    fn non_currencies_are_refused() {
        for raw in ["", "us", "usdd", "xau", "xxx", "abc", "ùsd", "US D"] {
            assert!(raw.parse::<Currency>().is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn amounts_are_formatted_with_the_currency_exponent() {
        let usd: Currency = "usd".parse().unwrap();
        assert_eq!(usd.format_amount(200), "2.00 USD");
        assert_eq!(usd.format_amount(5), "0.05 USD");
        assert_eq!(usd.format_amount(-5), "-0.05 USD");
        assert_eq!(
            "jpy".parse::<Currency>().unwrap().format_amount(500),
            "500 JPY"
        );
        assert_eq!(
            "kwd".parse::<Currency>().unwrap().format_amount(1234),
            "1.234 KWD"
        );
    }

    #[test]
    fn major_units_are_read_exactly() {
        let usd = Currency::USD;
        let cases = [
            ("0.50", 50),
            ("0.5", 50),
            ("0.29", 29),
            ("2", 200),
            ("19.99", 1999),
            ("0", 0),
            ("007.10", 710),
        ];
        for (raw, minor) in cases {
            assert_eq!(usd.parse_major(raw), Ok(minor), "{raw}");
        }
        assert_eq!(
            "jpy".parse::<Currency>().unwrap().parse_major("500"),
            Ok(500)
        );
        assert_eq!(
            "kwd".parse::<Currency>().unwrap().parse_major("1.234"),
            Ok(1234)
        );
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "-1",
            "1.999",
            "1e2",
            "0x10",
            "1,50",
            "99999999999999999999",
            "1 000",
        ] {
            assert!(usd.parse_major(bad).is_err(), "{bad:?} was accepted");
        }
        assert!("jpy"
            .parse::<Currency>()
            .unwrap()
            .parse_major("1.5")
            .is_err());
    }

    #[test]
    fn the_table_has_no_duplicates_and_every_special_exponent_is_a_code() {
        let mut sorted = CODES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), CODES.len());
        for code in ZERO_DECIMAL.iter().chain(THREE_DECIMAL).chain(FOUR_DECIMAL) {
            assert!(CODES.contains(code), "{code}");
        }
    }
}
