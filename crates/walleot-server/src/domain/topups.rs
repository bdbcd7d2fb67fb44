//! How money enters a wallet. Each source moves it with one ledger transfer from a
//! funding account of its own: sandbox credits (test mode) and voucher codes (both
//! modes) today; a card processor for live top-ups joins as one more [`TopUpSource`].

use super::ledger::Book;
use super::wallets::Wallets;
use super::DomainError;
use async_trait::async_trait;
use std::sync::Arc;
use walleot_api::Currency;

/// What the payer asked for.
#[derive(Debug, Clone)]
pub struct TopUpRequest {
    /// The currency to credit, for sources that let the payer choose it.
    pub currency: Option<Currency>,
    /// A voucher code, for sources that take one.
    pub code: Option<String>,
}

/// What was credited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUpReceipt {
    pub amount: i64,
    pub book: Book,
}

#[async_trait]
pub trait TopUpSource: Send + Sync {
    /// The name the wallet page uses for it.
    fn name(&self) -> &'static str;
    async fn top_up(
        &self,
        payer_id: &str,
        request: &TopUpRequest,
    ) -> Result<TopUpReceipt, DomainError>;
}

/// Test credits from the sandbox: test wallets only.
pub struct SandboxCredits(pub Wallets);

#[async_trait]
impl TopUpSource for SandboxCredits {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn top_up(
        &self,
        payer_id: &str,
        request: &TopUpRequest,
    ) -> Result<TopUpReceipt, DomainError> {
        let currency = request
            .currency
            .ok_or_else(|| DomainError::invalid("currency", "name the currency of the credits"))?;
        let amount = self.0.add_test_credits(payer_id, currency).await?;
        Ok(TopUpReceipt {
            amount,
            book: Book::test(currency),
        })
    }
}

/// Voucher codes made by the operator; each credits its own amount, mode and currency.
pub struct VoucherCodes(pub Wallets);

#[async_trait]
impl TopUpSource for VoucherCodes {
    fn name(&self) -> &'static str {
        "voucher"
    }

    async fn top_up(
        &self,
        payer_id: &str,
        request: &TopUpRequest,
    ) -> Result<TopUpReceipt, DomainError> {
        let code = request
            .code
            .as_deref()
            .ok_or_else(|| DomainError::invalid("code", "enter a voucher code"))?;
        let voucher = self.0.redeem(payer_id, code).await?;
        Ok(TopUpReceipt {
            amount: voucher.amount,
            book: voucher.book,
        })
    }
}

/// The sources this service offers, by name.
#[derive(Clone)]
pub struct TopUps {
    sources: Vec<Arc<dyn TopUpSource>>,
}

impl TopUps {
    pub fn new(sources: Vec<Arc<dyn TopUpSource>>) -> Self {
        TopUps { sources }
    }

    /// Sandbox credits and vouchers.
    pub fn standard(wallets: &Wallets) -> Self {
        Self::new(vec![
            Arc::new(SandboxCredits(wallets.clone())),
            Arc::new(VoucherCodes(wallets.clone())),
        ])
    }

    pub fn source(&self, name: &str) -> Option<&Arc<dyn TopUpSource>> {
        self.sources.iter().find(|s| s.name() == name)
    }
}
