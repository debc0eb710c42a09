"""Small hand-written X12 005010 files for the billing cases the corpus lacks (a payer's 835 for a secondary claim,
an 837P replacement claim): one helper per segment group, so a test states only the amounts that matter."""

from __future__ import annotations

T = "~\n"


def seg(*elements: str) -> str:
    return "*".join(elements) + T


def interchange(body: str, control: int, functional: str, version: str, n_st: int = 1) -> str:
    """ISA / GS around `body` (transaction sets ST ... SE) and the GE / IEA trailers."""
    isa = f"ISA*00*{'':10}*00*{'':10}*ZZ*{'SENDER':<15}*ZZ*{'RECEIVER':<15}*250401*1200*^*00501*{control:09d}*0*P*:" + T
    gs = seg("GS", functional, "SENDER", "RECEIVER", "20250401", "1200", str(control), "X", version)
    return isa + gs + body + seg("GE", str(n_st), str(control)) + seg("IEA", "1", f"{control:09d}")


def clp(claim: str, status: str, billed: str, paid: str, cas=(), services=()) -> str:
    """One claim payment: CLP, claim-level CAS (group, reason, amount), then service lines
    (procedure, charge, paid, [(group, reason, amount), ...])."""
    out = seg("CLP", claim, status, billed, paid, "", "12", "P" + claim, "11", "1")
    for group, reason, amount in cas:
        out += seg("CAS", group, reason, amount)
    for code, charge, line_paid, line_cas in services:
        out += seg("SVC", f"HC:{code}", charge, line_paid, "", "1")
        for group, reason, amount in line_cas:
            out += seg("CAS", group, reason, amount)
    return out


def payment_835(st: str, total: str, date: str, trace: str, payer_id: str, payer_name: str, claims: list[str]) -> str:
    """One 835 transaction (one check / EFT): BPR, TRN, the payer (N1*PR + REF*2U), the payee, its CLPs."""
    body = seg("ST", "835", st)
    body += seg("BPR", "I", total, "C", "CHK", *[""] * 11, date)
    body += seg("TRN", "1", trace, "1" + payer_id.rjust(9, "0")[-9:])
    body += seg("DTM", "405", date)
    body += seg("N1", "PR", payer_name, "XV", payer_id)
    body += seg("REF", "2U", payer_id)
    body += seg("N1", "PE", "TINY PT", "XX", "1234567893")
    body += seg("LX", "1")
    body += "".join(claims)
    return body + seg("SE", str(body.count("~") + 1), st)


def file_835(transactions: list[str], control: int) -> str:
    return interchange("".join(transactions), control, "HP", "005010X221A1", n_st=len(transactions))


def file_837p(
    control: int, claim: str, patient: str, payer: str, bht_date: str, frequency: str, lines: list[tuple]
) -> str:
    """One 837P claim of `patient` (REF*EA) to `payer`, frequency CLM05-3 (1 original, 7 replacement), with
    service lines (line item control number REF*6R, CPT, charge), all on 2025-03-05."""
    billed = f"{sum(float(charge) for _, _, charge in lines):.2f}"
    body = seg("ST", "837", "0001", "005010X222A1")
    body += seg("BHT", "0019", "00", f"B{control}", bht_date, "1200", "CH")
    body += seg("NM1", "41", "2", "TINY PT", "", "", "", "", "46", "SENDER")
    body += seg("NM1", "40", "2", "CLEARINGHOUSE", "", "", "", "", "46", "RECEIVER")
    body += seg("HL", "1", "", "20", "1")
    body += seg("NM1", "85", "2", "TINY PT", "", "", "", "", "XX", "1234567893")
    body += seg("HL", "2", "1", "22", "0")
    body += seg("SBR", "P", "18", "", "", "", "", "", "", "CI")
    body += seg("NM1", "IL", "1", "DOE", "JANE", "", "", "", "MI", "M123")
    body += seg("NM1", "PR", "2", "ACME", "", "", "", "", "PI", payer)
    body += seg("CLM", claim, billed, "", "", f"11:B:{frequency}", "Y", "A", "Y", "Y")
    body += seg("REF", "EA", patient)
    body += seg("HI", "ABK:M545")
    for n, (control_number, cpt, charge) in enumerate(lines, start=1):
        body += seg("LX", str(n))
        body += seg("SV1", f"HC:{cpt}:GP", charge, "UN", "1", "", "", "1")
        body += seg("DTP", "472", "D8", "20250305")
        body += seg("REF", "6R", control_number)
    body += seg("SE", str(body.count("~") + 1), "0001")
    return interchange(body, control, "HC", "005010X222A1")
