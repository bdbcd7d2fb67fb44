/**
 * Prices as people write them (`{ amount: 0.50, currency: "USD" }`), held as exact
 * integer minor units. Amounts are read as decimal text, never multiplied as floats,
 * so 0.29 USD is 29 cents and an amount finer than the currency's minor unit is
 * refused rather than rounded.
 */

// ISO 4217 minor units, as the Walleot service counts them; every other listed code has 2.
const ZERO_DECIMAL = new Set("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(" "));
const THREE_DECIMAL = new Set("BHD IQD JOD KWD LYD OMR TND".split(" "));
const FOUR_DECIMAL = new Set("CLF UYW".split(" "));
const CODES = new Set(
  `AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
   BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP
   ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR
   ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA
   MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK
   PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC
   SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND
   VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG`.split(/\s+/),
);

/** The largest amount the service accepts by default, in minor units. */
export const MAX_MINOR = 99_999_999;

/** What `registerTool` takes as `price`: an amount in major units and an ISO 4217 code. */
export interface ToolPrice {
  amount: number | string;
  currency: string;
}

/** A price that cannot be charged exactly. */
export class PriceError extends Error {
  override name = "PriceError";
}

/** Decimal places of the currency's minor unit: 2 for USD, 0 for JPY. */
export function exponent(currency: string): number {
  const code = currency.toUpperCase();
  if (!CODES.has(code)) {
    throw new PriceError(`unknown currency \`${currency}\`: use an ISO 4217 code such as USD`);
  }
  if (ZERO_DECIMAL.has(code)) return 0;
  if (THREE_DECIMAL.has(code)) return 3;
  if (FOUR_DECIMAL.has(code)) return 4;
  return 2;
}

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/**
 * `text` as an exact decimal: `digits * 10^-scale`. A JS number prints as the
 * shortest decimal that reads back to it (0.29, not 0.28999999999999998), so what
 * the author wrote is what is read.
 */
function parseDecimal(text: string): { negative: boolean; digits: bigint; scale: number } | undefined {
  const found = DECIMAL.exec(text);
  if (found === null) return undefined;
  const [, sign, whole = "", fraction = "", exp = "0"] = found;
  if (whole === "" && fraction === "") return undefined;
  const power = Number(exp);
  if (!Number.isSafeInteger(power) || Math.abs(power) > 1000) return undefined;
  return { negative: sign === "-", digits: BigInt(whole + fraction || "0"), scale: fraction.length - power };
}

/** The price of one call: `minor` units (19 for 0.19 USD, 500 for 500 JPY). */
export class Price {
  /** Prefer `Price.of`, which checks; this trusts its arguments. */
  constructor(
    readonly minor: number,
    /** Upper case. */
    readonly currency: string,
  ) {}

  /** Reads a price in major units, exactly: `Price.of(0.29, "USD")` is 29 cents. */
  static of(amount: unknown, currency: unknown): Price {
    if (typeof currency !== "string") {
      throw new PriceError('the currency must be a string such as "USD"');
    }
    const code = currency.trim();
    const places = exponent(code);
    let text: string;
    if (typeof amount === "number") {
      if (!Number.isFinite(amount)) throw new PriceError(`\`${amount}\` is not an amount like 0.50`);
      text = String(amount);
    } else if (typeof amount === "string") {
      text = amount.trim();
    } else if (typeof amount === "bigint") {
      text = amount.toString();
    } else {
      throw new PriceError(`\`${String(amount)}\` is not an amount like 0.50`);
    }
    const value = parseDecimal(text);
    if (value === undefined) throw new PriceError(`\`${String(amount)}\` is not an amount like 0.50`);
    const shift = places - value.scale;
    let minor: bigint;
    if (shift >= 0) {
      minor = value.digits * 10n ** BigInt(shift);
    } else {
      const per = 10n ** BigInt(-shift);
      if (value.digits % per !== 0n) {
        throw new PriceError(`${code.toUpperCase()} has ${places} decimal places; \`${String(amount)}\` has more`);
      }
      minor = value.digits / per;
    }
    if (value.negative && minor !== 0n) minor = -minor;
    if (minor <= 0n) throw new PriceError(`\`${String(amount)}\` is not a positive amount`);
    if (minor > BigInt(MAX_MINOR)) {
      throw new PriceError(`\`${String(amount)}\` is more than the service accepts for one payment`);
    }
    return new Price(Number(minor), code.toUpperCase());
  }

  get places(): number {
    return exponent(this.currency);
  }

  /** `0.19`, `500`. */
  majorText(): string {
    const places = this.places;
    if (places === 0) return String(this.minor);
    const per = 10 ** places;
    return `${Math.floor(this.minor / per)}.${String(this.minor % per).padStart(places, "0")}`;
  }

  /** The amount in major units as a JSON number (0.19, 500), for display; the exact figure is `minor`. */
  majorNumber(): number {
    return Number(this.majorText());
  }

  /** `0.19 USD`. */
  display(): string {
    return `${this.majorText()} ${this.currency}`;
  }

  /** What tools/list shows in the tool's `_meta.price`: `{ amount: 0.19, currency: "USD" }`. */
  meta(): { amount: number; currency: string } {
    return { amount: this.majorNumber(), currency: this.currency };
  }
}
