"""The practice's claims as X12 005010 837P files and their remittances as 835 files (what a clearinghouse
sends and returns), written from the generator's native CSVs.

- `837P_<YYYYMM>.837`: one interchange per month of submission, one transaction set per claim (so BHT04/05
  is the claim's own submitted_at). Billing provider (2010AA) = the practice, service facility (2310C) =
  the clinic, both by NPI; rendering provider (2310B, 2420A when a line differs) = the therapist's NPI;
  payer NM1*PR PI = our payer id; CLM01 = claim_id (the patient control number); REF*EA = patient_id;
  per charge line LX / SV1 (HC:CPT:modifiers, charge, UN units) / DTP*472 / REF*6R = charge_id.
- `835_<YYYYMM>.835`: one transaction set per payment = payer x payment day (TRN02 = the generated check
  number, BPR02 = the check's total); per claim adjudicated that day a CLP (status 1, or 4 for a denial,
  CLP03 billed, CLP04 paid, CLP05 patient responsibility) with claim-level CAS (CO-45 contractual, PR-1/2/3
  patient share, CO-<CARC> on a denial). No SVC lines: the generator adjudicates claims, not lines, and
  claim-level CAS keeps each 835 balanced (CLP03 - CLP04 = sum of CAS for a paid claim).

Not in X12: self-pay claims (never sent to a payer), patient payments and write-offs (the practice's own
ledger), minutes per line (837P bills units), episode / appointment ids (linked by patient + date in dbt).
The generator makes no reversals or provider-level adjustments, so none are written.
Segment strings are built with polars expressions per claim / line / payment, not per-row Python.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from seed_data.formats._native import clinic_npis, read

SENDER, RECEIVER = "PTPULSE", "CLEARINGHOUSE"
PRACTICE = "PT PULSE PHYSICAL THERAPY"
PRACTICE_TIN = "751234567"
FILING = {  # payer_class -> claim filing indicator (SBR09 / CLP06)
    "commercial": "CI",
    "medicare": "MB",
    "medicare_advantage": "16",
    "medicaid": "MC",
    "workers_comp": "WC",
    "auto_pi": "AM",
}
FILING_835 = {**FILING, "commercial": "12"}  # CLP06 has no CI: commercial claims are reported as PPO (12)
T = "~\n"  # segment terminator (a line break after it for humans; the reader ignores it)


def _clean(expr: pl.Expr) -> pl.Expr:
    """Free text in an element: X12 delimiters (* ~ : ^) become spaces, upper case as payers print it."""
    return expr.cast(pl.String).fill_null("").str.replace_all(r"[*~:^\r\n]", " ").str.to_uppercase()


def _money(expr: pl.Expr) -> pl.Expr:
    cents = (expr.cast(pl.Float64) * 100).round(0).cast(pl.Int64)
    sign = pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    a = cents.abs()
    return pl.concat_str([sign, (a // 100).cast(pl.String), pl.lit("."), (a % 100).cast(pl.String).str.zfill(2)])


def _seg(*parts: pl.Expr | str) -> pl.Expr:
    """One segment: elements joined by '*', then the terminator (trailing empty elements are the caller's)."""
    exprs = [p if isinstance(p, pl.Expr) else pl.lit(p) for p in parts]
    return pl.concat_str([pl.concat_str(exprs, separator="*"), pl.lit(T)])


def _patient_nm1(qualifier: str) -> pl.Expr:
    """The patient's NM1 by member id (MI): IL is the 837P subscriber, QC the 835 claim's patient."""
    first, last, member = (_clean(pl.col(c)) for c in ("first_name", "last_name", "member_id"))
    return _seg("NM1", qualifier, "1", last, first, "", "", "", "MI", member)


def _envelope(kind: str, control: int, stamp: str, body: str, n_st: int) -> str:
    """ISA/GS ... GE/IEA around the transaction sets of one file (ISA is fixed-width, 106 characters)."""
    version = {"837": "005010X222A1", "835": "005010X221A1"}[kind]
    functional = {"837": "HC", "835": "HP"}[kind]
    ymd, hm = stamp[:8], stamp[8:12]
    isa = (
        f"ISA*00*{'':10}*00*{'':10}*ZZ*{SENDER if kind == '837' else RECEIVER:<15}*ZZ*"
        f"{RECEIVER if kind == '837' else SENDER:<15}*{ymd[2:]}*{hm}*^*00501*{control:09d}*0*P*:{T}"
    )
    gs = f"GS*{functional}*{SENDER if kind == '837' else RECEIVER}*{RECEIVER if kind == '837' else SENDER}"
    gs += f"*{ymd}*{hm}*{control}*X*{version}{T}"
    return isa + gs + body + f"GE*{n_st}*{control}{T}IEA*1*{control:09d}{T}"


def _reference(native: Path) -> dict[str, pl.DataFrame]:
    clinics = read(native, "clinics")
    # the clinics file's NPI (what the practice's dims say, so int_clinic_crosswalk maps the 837P back), else one
    # derived from the id for native files written before clinics carried an NPI
    clinics = clinics.with_columns(clinic_npis(clinics["clinic_id"])).with_columns(
        clinic_npi=pl.coalesce(pl.col("npi").cast(pl.String), pl.col("clinic_npi"))
    )
    payers = read(native, "payers")
    patients = read(native, "patients")
    therapists = read(native, "therapists")
    notes = read(native, "documentation_events").filter(pl.col("note_type") == "initial_eval")
    icd = notes.group_by("episode_id").agg(pl.col("icd10_primary").drop_nulls().first())
    return dict(clinics=clinics, payers=payers, patients=patients, therapists=therapists, icd=icd)


def _billed_claims(native: Path, ref: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Claims sent to a payer (not self-pay), with what the 837P / 835 print about them."""
    claims = read(native, "claims")
    return (
        claims.join(ref["payers"].select("payer_id", "payer_name", "payer_class"), on="payer_id", how="inner")
        .filter(pl.col("payer_class") != "self_pay")
        .join(
            ref["patients"].select(
                "patient_id",
                "first_name",
                "last_name",
                "birth_date",
                "sex",
                "member_id",
                "address_line",
                "city",
                "state",
                "zip",
            ),
            on="patient_id",
            how="left",
        )
        .join(
            ref["clinics"].select(
                "clinic_id",
                "clinic_name",
                "clinic_npi",
                pl.col("address_line").alias("c_addr"),
                pl.col("city").alias("c_city"),
                pl.col("state").alias("c_state"),
                pl.col("zip").alias("c_zip"),
            ),
            on="clinic_id",
            how="left",
        )
        .join(ref["icd"], on="episode_id", how="left")
        .with_columns(
            filing=pl.col("payer_class").replace_strict(FILING, default="ZZ"),
            filing_835=pl.col("payer_class").replace_strict(FILING_835, default="ZZ"),
        )
    )


def write(native: Path, out: Path) -> dict[str, int]:
    """Write 837P and 835 files of the practice in `native` to `out`; returns {file name: claims or CLPs}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ref = _reference(native)
    claims = _billed_claims(native, ref)
    rows = _write_837p(native, out, claims, ref)
    rows.update(_write_835(native, out, claims))
    return rows


def _write_837p(native: Path, out: Path, claims: pl.DataFrame, ref: dict[str, pl.DataFrame]) -> dict[str, int]:
    ths = ref["therapists"].select(
        "therapist_id", pl.col("first_name").alias("t_first"), pl.col("last_name").alias("t_last"), "npi"
    )
    lines = (
        read(native, "charges")
        .join(claims.select("claim_id"), on="claim_id", how="semi")
        .join(ths, on="therapist_id", how="left")
        .sort("claim_id", "charge_id")
        .with_columns(lx=pl.int_range(1, pl.len() + 1).over("claim_id"))
    )
    first = lines.group_by("claim_id", maintain_order=True).agg(
        pl.col("therapist_id").first().alias("claim_therapist"),
        pl.col("t_first").first(),
        pl.col("t_last").first(),
        pl.col("npi").first().alias("t_npi"),
    )
    mods = pl.col("modifiers").fill_null("").str.replace_all(r"\|", ":")
    procedure = pl.concat_str(
        [pl.lit("HC:"), pl.col("cpt_code"), pl.when(mods != "").then(pl.lit(":") + mods).otherwise(pl.lit(""))]
    )
    lines = lines.join(first.select("claim_id", "claim_therapist"), on="claim_id").with_columns(
        text=pl.concat_str(
            [
                _seg("LX", pl.col("lx").cast(pl.String)),
                _seg(
                    "SV1", procedure, _money(pl.col("charge_usd")), "UN", pl.col("units").cast(pl.String), "", "", "1"
                ),
                _seg("DTP", "472", "D8", pl.col("service_date").dt.strftime("%Y%m%d")),
                _seg("REF", "6R", pl.col("charge_id")),
                pl.when(pl.col("therapist_id") != pl.col("claim_therapist"))
                .then(
                    _seg(
                        "NM1",
                        "82",
                        "1",
                        _clean(pl.col("t_last")),
                        _clean(pl.col("t_first")),
                        "",
                        "",
                        "",
                        "XX",
                        pl.col("npi"),
                    )
                )
                .otherwise(pl.lit("")),
            ]
        )
    )
    body = lines.group_by("claim_id", maintain_order=True).agg(pl.col("text").str.join(""))
    practice_npi = clinic_npis(pl.Series(["PRACTICE0"]))[0]
    c = claims.join(first, on="claim_id", how="left").join(body, on="claim_id", how="inner")
    c = c.sort("submitted_at", "claim_id").with_columns(
        month=pl.col("submitted_at").dt.strftime("%Y%m"),
        ymd=pl.col("submitted_at").dt.strftime("%Y%m%d"),
    )
    c = c.with_columns(st=pl.int_range(1, pl.len() + 1).over("month").cast(pl.String).str.zfill(4))
    icd = pl.col("icd10_primary").fill_null("M62.81").str.replace_all(r"\.", "")
    head = pl.concat_str(
        [
            _seg("ST", "837", pl.col("st"), "005010X222A1"),
            _seg(
                "BHT",
                "0019",
                "00",
                pl.col("claim_id"),
                pl.col("ymd"),
                pl.col("submitted_at").dt.strftime("%H%M%S"),
                "CH",
            ),
            _seg("NM1", "41", "2", PRACTICE, "", "", "", "", "46", SENDER),
            _seg("PER", "IC", "BILLING OFFICE", "TE", "5555550100"),
            _seg("NM1", "40", "2", RECEIVER, "", "", "", "", "46", RECEIVER),
            _seg("HL", "1", "", "20", "1"),
            _seg("NM1", "85", "2", PRACTICE, "", "", "", "", "XX", practice_npi),
            _seg("N3", _clean(pl.col("c_addr"))),
            _seg("N4", _clean(pl.col("c_city")), pl.col("c_state"), pl.col("c_zip")),
            _seg("REF", "EI", PRACTICE_TIN),
            _seg("HL", "2", "1", "22", "0"),
            _seg("SBR", "P", "18", "", "", "", "", "", "", pl.col("filing")),
            _patient_nm1("IL"),  # subscriber = the patient
            _seg("N3", _clean(pl.col("address_line"))),
            _seg("N4", _clean(pl.col("city")), pl.col("state"), pl.col("zip")),
            _seg(
                "DMG",
                "D8",
                pl.col("birth_date").dt.strftime("%Y%m%d"),
                pl.when(pl.col("sex").is_in(["M", "F"])).then(pl.col("sex")).otherwise(pl.lit("U")),
            ),
            _seg("NM1", "PR", "2", _clean(pl.col("payer_name")), "", "", "", "", "PI", pl.col("payer_id")),
            _seg("CLM", pl.col("claim_id"), _money(pl.col("billed_usd")), "", "", "11:B:1", "Y", "A", "Y", "Y"),
            _seg("REF", "EA", pl.col("patient_id")),
            _seg("HI", pl.concat_str([pl.lit("ABK:"), icd])),
            _seg(
                "NM1", "82", "1", _clean(pl.col("t_last")), _clean(pl.col("t_first")), "", "", "", "XX", pl.col("t_npi")
            ),
            _seg("NM1", "77", "2", _clean(pl.col("clinic_name")), "", "", "", "", "XX", pl.col("clinic_npi")),
            _seg("N3", _clean(pl.col("c_addr"))),
            _seg("N4", _clean(pl.col("c_city")), pl.col("c_state"), pl.col("c_zip")),
        ]
    )
    c = c.with_columns(tx=head + pl.col("text"))
    c = c.with_columns(
        tx=pl.col("tx") + _seg("SE", (pl.col("tx").str.count_matches("~") + 1).cast(pl.String), pl.col("st"))
    )
    return _files(out, "837", "837P", c)


def _files(out: Path, kind: str, prefix: str, frame: pl.DataFrame) -> dict[str, int]:
    """One file per month: its transaction sets concatenated inside one envelope (a loop over months)."""
    per_month = (
        frame.group_by("month", maintain_order=True)
        .agg(
            pl.col("tx").str.join(""),
            pl.len().alias("n"),
            pl.col("ymd").max(),
            pl.col("stamp").max() if "stamp" in frame.columns else pl.lit("0900").alias("stamp"),
        )
        .sort("month")
    )
    rows = {}
    for k, (month, body, n, ymd, stamp) in enumerate(per_month.iter_rows(), start=1):
        name = f"{prefix}_{month}.{kind}"
        control = (1 if kind == "837" else 5) * 100_000 + k
        (out / name).write_text(_envelope(kind, control, ymd + stamp, body, n), encoding="ascii", newline="\n")
        rows[name] = n
    return rows


def _write_835(native: Path, out: Path, claims: pl.DataFrame) -> dict[str, int]:
    payer_side = ["payer_payment", "contractual_adjustment", "patient_responsibility", "denial"]
    rem = (
        read(native, "remittances")
        .filter(pl.col("event_type").is_in(payer_side))
        .drop("payer_id", "episode_id", "service_date")  # the claim's (a remittance carries them only without one)
        .join(
            claims.select(
                "claim_id",
                "payer_id",
                "payer_name",
                "billed_usd",
                "filing_835",
                "first_name",
                "last_name",
                "member_id",
                "service_date",
            ),
            on="claim_id",
            how="inner",
        )
        .with_columns(day=pl.col("event_at").dt.date())
    )
    # CAS segments: one per (claim, day, group), triplets reason*amount*(empty quantity), at most 6 per segment
    adj = rem.filter(pl.col("event_type") != "payer_payment").with_columns(
        amt=pl.when(pl.col("event_type") == "denial").then(pl.col("billed_usd")).otherwise(pl.col("amount_usd"))
    )
    adj = adj.sort("claim_id", "day", "group_code", "carc_code").with_columns(
        part=((pl.int_range(pl.len()).over("claim_id", "day", "group_code")) // 6)
    )
    cas = (
        adj.group_by("claim_id", "day", "group_code", "part", maintain_order=True)
        .agg(pl.concat_str([pl.col("carc_code"), _money(pl.col("amt"))], separator="*").str.join("**").alias("t"))
        .with_columns(cas=pl.concat_str([pl.lit("CAS*"), pl.col("group_code"), pl.lit("*"), pl.col("t"), pl.lit(T)]))
        .group_by("claim_id", "day", maintain_order=True)
        .agg(pl.col("cas").str.join(""))
    )
    money = pl.col("amount_usd")
    clp = (
        rem.group_by("payer_id", "day", "claim_id", maintain_order=True)
        .agg(
            paid=money.filter(pl.col("event_type") == "payer_payment").sum(),
            pr=money.filter(pl.col("event_type") == "patient_responsibility").sum(),
            denied=(pl.col("event_type") == "denial").any(),
            check=pl.col("check_number").drop_nulls().first(),
            **{
                c: pl.col(c).first()
                for c in (
                    "payer_name",
                    "billed_usd",
                    "filing_835",
                    "first_name",
                    "last_name",
                    "member_id",
                    "service_date",
                )
            },
        )
        .join(cas, on=["claim_id", "day"], how="left")
        .sort("day", "payer_id", "claim_id")
    )
    clp = clp.with_columns(
        text=pl.concat_str(
            [
                _seg(
                    "CLP",
                    pl.col("claim_id"),
                    pl.when(pl.col("denied")).then(pl.lit("4")).otherwise(pl.lit("1")),
                    _money(pl.col("billed_usd")),
                    _money(pl.col("paid")),
                    pl.when(pl.col("pr") > 0).then(_money(pl.col("pr"))).otherwise(pl.lit("")),
                    pl.col("filing_835"),
                    pl.concat_str([pl.lit("P"), pl.col("claim_id")]),
                    "11",
                    "1",
                ),
                pl.col("cas").fill_null(""),
                _patient_nm1("QC"),
                _seg("DTM", "232", pl.col("service_date").dt.strftime("%Y%m%d")),
            ]
        )
    )
    pay = (
        clp.group_by("payer_id", "day", maintain_order=True)
        .agg(
            pl.col("text").str.join(""),
            pl.col("paid").sum().alias("total"),
            pl.col("check").drop_nulls().first(),
            pl.col("payer_name").first(),
            pl.len().alias("clps"),
        )
        .sort("day", "payer_id")
        .with_columns(
            month=pl.col("day").dt.strftime("%Y%m"),
            ymd=pl.col("day").dt.strftime("%Y%m%d"),
            trace=pl.col("check").fill_null(
                pl.concat_str([pl.lit("NOPAY-"), pl.col("payer_id"), pl.lit("-"), pl.col("day").dt.strftime("%Y%m%d")])
            ),
            tin=pl.concat_str([pl.lit("1"), pl.col("payer_id").str.replace_all(r"\D", "").str.zfill(9)]),
        )
    )
    pay = pay.with_columns(st=pl.int_range(1, pl.len() + 1).over("month").cast(pl.String).str.zfill(4))
    has_cash = pl.col("total") > 0
    head = pl.concat_str(
        [
            _seg("ST", "835", pl.col("st")),
            _seg(
                "BPR",
                pl.when(has_cash).then(pl.lit("I")).otherwise(pl.lit("H")),
                _money(pl.col("total")),
                "C",
                pl.when(has_cash).then(pl.lit("CHK")).otherwise(pl.lit("NON")),
                *[""] * 11,
                pl.col("ymd"),
            ),
            _seg("TRN", "1", pl.col("trace"), pl.col("tin")),
            _seg("DTM", "405", pl.col("ymd")),
            _seg("N1", "PR", _clean(pl.col("payer_name")), "XV", pl.col("payer_id")),
            _seg("N3", "PO BOX 1000"),
            _seg("N4", "DALLAS", "TX", "75201"),
            _seg("REF", "2U", pl.col("payer_id")),
            _seg("PER", "BL", "PROVIDER SERVICES", "TE", "8005550199"),
            _seg("N1", "PE", PRACTICE, "XX", clinic_npis(pl.Series(["PRACTICE0"]))[0]),
            _seg("REF", "TJ", PRACTICE_TIN),
            _seg("LX", "1"),
        ]
    )
    pay = pay.with_columns(tx=head + pl.col("text"))
    pay = pay.with_columns(
        tx=pl.col("tx") + _seg("SE", (pl.col("tx").str.count_matches("~") + 1).cast(pl.String), pl.col("st"))
    )
    return _files(out, "835", "835", pay)
