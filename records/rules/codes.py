"""Code lists the CDP data model refers to: ISO 3166-1 alpha-2, ISO 639-1, ISO 4217, CDP enums."""

# ISO 3166-1 alpha-2: the 249 officially assigned codes (cross-checked against the IANA time
# zone database's iso3166.tab). Reserved and user-assigned codes (EU, UK, XK, ...) are not
# country codes and CDP expects real ones (cdp-batch-api.md §3 conventions).
COUNTRY_CODES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN
    BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL
    GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM
    JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
    MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP
    NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD
    SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 - a block of codes reads and diffs better than a literal
)

# ISO 639-1: the 183 current two-letter codes plus `BH` (Bihari, deprecated in 2021 but still
# found in older extracts). Stored upper case because CDP writes languages as `EN`, `FR`.
LANGUAGE_CODES: frozenset[str] = frozenset(
    """
    AA AB AE AF AK AM AN AR AS AV AY AZ BA BE BG BH BI BM BN BO BR BS CA CE CH CO CR CS
    CU CV CY DA DE DV DZ EE EL EN EO ES ET EU FA FF FI FJ FO FR FY GA GD GL GN GU GV HA
    HE HI HO HR HT HU HY HZ IA ID IE IG II IK IO IS IT IU JA JV KA KG KI KJ KK KL KM KN
    KO KR KS KU KV KW KY LA LB LG LI LN LO LT LU LV MG MH MI MK ML MN MR MS MT MY NA NB
    ND NE NG NL NN NO NR NV NY OC OJ OM OR OS PA PI PL PS PT QU RM RN RO RU RW SA SC SD
    SE SG SI SK SL SM SN SO SQ SR SS ST SU SV SW TA TE TG TH TI TK TL TN TO TR TS TT TW
    TY UG UK UR UZ VE VI VO WA WO XH YI YO ZA ZH ZU
    """.split()  # noqa: SIM905 - a block of codes reads and diffs better than a literal
)

# ISO 4217 list one, active alphabetic codes (including funds and the X-codes the standard
# lists), as amended up to XCG (Caribbean guilder, 2025) and ZWG (Zimbabwe Gold, 2024).
CURRENCY_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
    IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD
    OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE
    SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI
    UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF
    XPT XSU XTS XUA XXX YER ZAR ZMW ZWG
    """.split()  # noqa: SIM905 - a block of codes reads and diffs better than a literal
)

# Codes withdrawn from list one since 2015. Still accepted: the portal's main job is loading
# *historical* data, and a 2022 order priced in HRK is correct for its date.
FORMER_CURRENCY_CODES: frozenset[str] = frozenset(
    ("ANG", "BGN", "BYR", "CUC", "HRK", "LTL", "MRO", "SLL", "STD", "VEF", "ZWL")
)

ACCEPTED_CURRENCY_CODES: frozenset[str] = CURRENCY_CODES | FORMER_CURRENCY_CODES

# Guest titles, current S-GUEST list (the 2015 list's `Lady` is gone). Canonical casing.
TITLES: tuple[str, ...] = (
    "Br", "Brigadier", "Capt", "Colonel", "Dame", "Dr", "Elder", "Fr", "General", "Hon",
    "Judge", "Lord", "Master", "Miss", "Mr", "Mrs", "Ms", "Mstr", "Prof", "Rabbi", "Rev",
    "Shaikha", "Sheikh", "Sir", "Sister", "Sr",
)  # fmt: skip

GENDERS: tuple[str, ...] = ("male", "female", "unknown")

# Batch data model 2.1 accepts only identified guests (S-GUEST).
GUEST_TYPE = "customer"

EXTENSION_NAMES: tuple[str, ...] = ("ext", "ext1", "ext2", "ext3", "ext4", "ext5")
EXTENSION_KEY = "default"

# Subscription channels: BX15 documents EMAIL, SMS and PUSH_NOTIFICATION as the enum and marks
# the last two "not available" (in 2015). Subscriptions themselves are unconfirmed in batch
# 2.1 (Q6) and cdp-batch-api.md §0 asks to accept every documented variant, so all three pass
# here; if a tenant rejects SMS/PUSH_NOTIFICATION, CDP's per-record log says so and the record
# can be fixed. Narrowing the list is a one-line change.
SUBSCRIPTION_CHANNELS: tuple[str, ...] = ("EMAIL", "SMS", "PUSH_NOTIFICATION")
SUBSCRIPTION_STATUSES: tuple[str, ...] = ("PENDING", "SUBSCRIBED", "UNSUBSCRIBED", "UNKNOWN")

# Orders (cdp-batch-api.md §3.2, S-ORDER). Channels: the current list.
ORDER_CHANNELS: tuple[str, ...] = (
    "AIRPORT_KIOSK", "BRANCH", "CALL_CENTER", "GDS", "KIOSK", "MOBILE_APP", "MOBILE_WEB",
    "OFFLINE", "OTA", "OTHER", "WEB",
)  # fmt: skip
# The current statuses, the data lake's UNKNOWN, and the 2015 list (misspellings as CDP wrote
# them: a tenant loaded in 2015 may still hold PARTIALY_REFUNDED orders).
ORDER_STATUSES: tuple[str, ...] = (
    "PURCHASED", "PAYMENT_PENDING", "CONFIRMED", "CANCELLED", "REFUNDED", "UNKNOWN",
    "RESERVED", "DECLINED", "PENDING", "PARTIALY_CONFIRMED", "PARTIALY_REFUNDED",
)  # fmt: skip
PAYMENT_TYPES: tuple[str, ...] = ("Card", "Paypal", "Voucher", "ATM", "Cash", "Other")
CARD_TYPES: tuple[str, ...] = ("Mastercard", "Visa", "Diners", "American Express")
