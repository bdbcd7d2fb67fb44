//! The double-entry ledger: every movement of money is a transfer that debits one account
//! and credits another by the same integer amount, in one currency and one mode.
//!
//! Accounts keep running totals of their transfers: posted debits and credits, and the
//! pending ones (holds). A balance is posted credits minus posted debits, so the
//! balances of all accounts of a currency and mode always sum to zero. Wallets may not
//! be overdrawn: their posted and pending debits never exceed their posted credits,
//! which is checked by the store on every transfer and by the database itself.
//! [`verify`] recomputes every total from the transfers.

use walleot_api::Currency;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
pub enum AccountKind {
    /// A payer's prepaid wallet; never below zero.
    Wallet,
    /// What a merchant has earned.
    Merchant,
    /// The source of sandbox credits in test mode.
    Sandbox,
    /// The source of voucher credits.
    Voucher,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether debits may exceed credits (the service's funding accounts may).
    pub fn may_overdraw(self) -> bool {
        matches!(self, AccountKind::Sandbox | AccountKind::Voucher)
    }
}

/// A set of books: one currency in one mode (test or live). Every account and
/// transfer belongs to one; money never moves between books, and the balances of each
/// sum to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Book {
    pub currency: Currency,
    pub livemode: bool,
}

impl Book {
    pub fn new(currency: Currency, livemode: bool) -> Self {
        Book { currency, livemode }
    }

    /// Test money of `currency`.
    pub fn test(currency: Currency) -> Self {
        Book::new(currency, false)
    }
}

/// Names an account without knowing its id: the store finds or opens it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountRef {
    pub kind: AccountKind,
    /// Payer id, merchant id, or empty for the service's own accounts.
    pub owner_id: String,
    pub book: Book,
}

impl AccountRef {
    pub fn wallet(payer_id: &str, book: Book) -> Self {
        Self::of(AccountKind::Wallet, payer_id, book)
    }

    pub fn merchant(merchant_id: &str, book: Book) -> Self {
        Self::of(AccountKind::Merchant, merchant_id, book)
    }

    /// Sandbox credits exist in test books only.
    pub fn sandbox(currency: Currency) -> Self {
        Self::of(AccountKind::Sandbox, "", Book::test(currency))
    }

    pub fn vouchers(book: Book) -> Self {
        Self::of(AccountKind::Voucher, "", book)
    }

    fn of(kind: AccountKind, owner: &str, book: Book) -> Self {
        AccountRef {
            kind,
            owner_id: owner.to_string(),
            book,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub kind: AccountKind,
    pub owner_id: String,
    pub book: Book,
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
}

impl Account {
    /// Posted credits minus posted debits.
    pub fn balance(&self) -> i64 {
        self.credits_posted - self.debits_posted
    }

    /// What can still be spent: the balance less the funds held by pending debits.
    pub fn available(&self) -> i64 {
        self.balance() - self.debits_pending
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum TransferState {
    /// Funds reserved: counted against the debit account's available balance.
    Pending,
    Posted,
    /// A pending transfer released on purpose.
    Voided,
    /// A pending transfer released because its deadline passed.
    Lapsed,
}

impl TransferState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum TransferKind {
    /// A payer paying a session.
    Charge,
    /// Sandbox credits into a test wallet.
    SandboxCredit,
    /// A redeemed voucher.
    Voucher,
    /// A merchant giving a payment back, in whole or in part.
    Refund,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: String,
    pub debit_account: String,
    pub credit_account: String,
    pub amount: i64,
    pub book: Book,
    pub state: TransferState,
    pub kind: TransferKind,
    pub session_id: Option<String>,
    pub memo: Option<String>,
    pub created_at: i64,
    pub lapses_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

/// A transfer to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferSpec {
    pub debit: AccountRef,
    pub credit: AccountRef,
    pub amount: i64,
    pub kind: TransferKind,
    pub session_id: Option<String>,
    pub memo: Option<String>,
    /// `Some(deadline)` makes a pending transfer (a hold) that lapses then.
    pub hold_until: Option<i64>,
}

/// Why a transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("insufficient funds: {available} available, {needed} needed")]
    InsufficientFunds { available: i64, needed: i64 },
    #[error("a transfer moves a positive amount between two accounts of one currency and mode")]
    Malformed,
    #[error("the transfer is not pending")]
    NotPending,
    #[error("no such transfer")]
    NotFound,
}

impl TransferSpec {
    /// Rules that hold before any account is touched.
    pub fn check(&self) -> Result<(), LedgerError> {
        if self.amount <= 0 || self.debit.book != self.credit.book || self.debit == self.credit {
            return Err(LedgerError::Malformed);
        }
        Ok(())
    }
}

/// One way the stored ledger disagrees with itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// An account's stored totals differ from the sum of its transfers.
    Totals {
        account: String,
        stored: [i64; 4],
        computed: [i64; 4],
    },
    /// A wallet is overdrawn.
    Overdrawn { account: String, available: i64 },
    /// The balances of one currency and mode do not sum to zero.
    Unbalanced { book: Book, sum: i64 },
    /// A transfer names an account that does not exist, or of another book.
    BadTransfer { transfer: String },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Totals { account, stored, computed } => write!(
                f,
                "account {account}: stored [debits posted, credits posted, debits pending, credits pending] {stored:?}, transfers give {computed:?}"
            ),
            Mismatch::Overdrawn { account, available } => {
                write!(f, "wallet {account} is overdrawn: available {available}")
            }
            Mismatch::Unbalanced { book, sum } => write!(
                f,
                "{} {} balances sum to {sum}, not 0",
                if book.livemode { "live" } else { "test" },
                book.currency
            ),
            Mismatch::BadTransfer { transfer } => {
                write!(f, "transfer {transfer} names an unknown account or mixes books")
            }
        }
    }
}

/// Recomputes every account's totals from the transfers and checks the invariants.
pub fn verify(accounts: &[Account], transfers: &[Transfer]) -> Vec<Mismatch> {
    use std::collections::HashMap;
    let mut computed: HashMap<&str, [i64; 4]> =
        accounts.iter().map(|a| (a.id.as_str(), [0; 4])).collect();
    let book: HashMap<&str, Book> = accounts.iter().map(|a| (a.id.as_str(), a.book)).collect();
    let mut problems = Vec::new();
    for t in transfers {
        let fits = |id: &str| book.get(id) == Some(&t.book);
        if !fits(&t.debit_account) || !fits(&t.credit_account) {
            problems.push(Mismatch::BadTransfer {
                transfer: t.id.clone(),
            });
            continue;
        }
        let (debit_slot, credit_slot) = match t.state {
            TransferState::Posted => (0, 1),
            TransferState::Pending => (2, 3),
            TransferState::Voided | TransferState::Lapsed => continue,
        };
        if let Some(totals) = computed.get_mut(t.debit_account.as_str()) {
            totals[debit_slot] += t.amount;
        }
        if let Some(totals) = computed.get_mut(t.credit_account.as_str()) {
            totals[credit_slot] += t.amount;
        }
    }
    let mut sums: HashMap<Book, i64> = HashMap::new();
    for a in accounts {
        let stored = [
            a.debits_posted,
            a.credits_posted,
            a.debits_pending,
            a.credits_pending,
        ];
        let computed = computed[a.id.as_str()];
        if stored != computed {
            problems.push(Mismatch::Totals {
                account: a.id.clone(),
                stored,
                computed,
            });
        }
        if !a.kind.may_overdraw() && a.available() < 0 {
            problems.push(Mismatch::Overdrawn {
                account: a.id.clone(),
                available: a.available(),
            });
        }
        *sums.entry(a.book).or_default() += a.balance();
    }
    let mut unbalanced: Vec<_> = sums.into_iter().filter(|(_, sum)| *sum != 0).collect();
    unbalanced.sort_by_key(|(book, _)| *book);
    for (book, sum) in unbalanced {
        problems.push(Mismatch::Unbalanced { book, sum });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, kind: AccountKind, totals: [i64; 4]) -> Account {
        Account {
            id: id.into(),
            kind,
            owner_id: String::new(),
            book: Book::test(Currency::USD),
            debits_posted: totals[0],
            credits_posted: totals[1],
            debits_pending: totals[2],
            credits_pending: totals[3],
        }
    }

    fn transfer(id: &str, from: &str, to: &str, amount: i64, state: TransferState) -> Transfer {
        Transfer {
            id: id.into(),
            debit_account: from.into(),
            credit_account: to.into(),
            amount,
            book: Book::test(Currency::USD),
            state,
            kind: TransferKind::Charge,
            session_id: None,
            memo: None,
            created_at: 0,
            lapses_at: None,
            resolved_at: None,
        }
    }

    #[test]
    fn a_consistent_ledger_verifies() {
        let accounts = [
            account("sandbox", AccountKind::Sandbox, [1000, 0, 0, 0]),
            account("wallet", AccountKind::Wallet, [300, 1000, 50, 0]),
            account("shop", AccountKind::Merchant, [0, 300, 0, 50]),
        ];
        let transfers = [
            transfer("t1", "sandbox", "wallet", 1000, TransferState::Posted),
            transfer("t2", "wallet", "shop", 300, TransferState::Posted),
            transfer("t3", "wallet", "shop", 50, TransferState::Pending),
            transfer("t4", "wallet", "shop", 70, TransferState::Voided),
        ];
        assert_eq!(verify(&accounts, &transfers), vec![]);
        assert_eq!(accounts[1].balance(), 700);
        assert_eq!(accounts[1].available(), 650);
    }

    #[test]
    fn every_kind_of_damage_is_found() {
        let accounts = [
            account("sandbox", AccountKind::Sandbox, [100, 0, 0, 0]),
            account("wallet", AccountKind::Wallet, [150, 100, 0, 0]),
            account("shop", AccountKind::Merchant, [0, 100, 0, 0]),
        ];
        let transfers = [
            transfer("t1", "sandbox", "wallet", 100, TransferState::Posted),
            transfer("t2", "wallet", "shop", 100, TransferState::Posted),
            transfer("t3", "wallet", "ghost", 5, TransferState::Posted),
        ];
        let problems = verify(&accounts, &transfers);
        assert!(problems.contains(&Mismatch::BadTransfer {
            transfer: "t3".into()
        }));
        assert!(problems.contains(&Mismatch::Totals {
            account: "wallet".into(),
            stored: [150, 100, 0, 0],
            computed: [100, 100, 0, 0],
        }));
        assert!(problems.contains(&Mismatch::Overdrawn {
            account: "wallet".into(),
            available: -50
        }));
        assert!(problems.contains(&Mismatch::Unbalanced {
            book: Book::test(Currency::USD),
            sum: -50,
        }));
    }

    #[test]
    fn malformed_transfers_are_refused_before_touching_accounts() {
        let usd = Currency::USD;
        let eur: Currency = "eur".parse().unwrap();
        let spec = |debit: AccountRef, credit: AccountRef, amount| TransferSpec {
            debit,
            credit,
            amount,
            kind: TransferKind::Charge,
            session_id: None,
            memo: None,
            hold_until: None,
        };
        let w = AccountRef::wallet("p", Book::test(usd));
        assert!(
            spec(w.clone(), AccountRef::merchant("m", Book::test(usd)), 1)
                .check()
                .is_ok()
        );
        assert!(
            spec(w.clone(), AccountRef::merchant("m", Book::test(usd)), 0)
                .check()
                .is_err()
        );
        assert!(
            spec(w.clone(), AccountRef::merchant("m", Book::test(eur)), 1)
                .check()
                .is_err()
        );
        assert!(spec(
            w.clone(),
            AccountRef::merchant("m", Book::new(usd, true)),
            1
        )
        .check()
        .is_err());
        assert!(spec(w.clone(), w, 1).check().is_err());
    }
}
