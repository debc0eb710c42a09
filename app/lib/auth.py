"""Who may see what: roles, the page access matrix, clinic scope and the de-identification rule.

Everything here is pure data and small functions so the rules are tested without Streamlit and every
page and query asks the same place. Enforcement is server-side: pages call `require_page` (refuse and
stop) and queries receive a `Scope` that decides which clinics and which columns they may return.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROLES: tuple[str, ...] = ("owner", "manager", "front_desk", "marketing", "analyst", "admin")

ROLE_LABELS: Mapping[str, str] = {
    "owner": "Practice owner",
    "manager": "Clinic manager",
    "front_desk": "Front desk",
    "marketing": "Marketing / liaison",
    "analyst": "Analyst",
    "admin": "Administrator",
}

# Roles that may receive protected health information (names, phones, emails, birth dates, addresses,
# patient_id). Marketing and analysts work on de-identified data only (patient_key instead).
PHI_ROLES: frozenset[str] = frozenset({"owner", "manager", "front_desk", "admin"})

# Roles whose clinic list in the roles file limits what they see. Owners, analysts, marketing and
# admins work practice-wide unless the roles file names clinics for them.
CLINIC_SCOPED_BY_DEFAULT: frozenset[str] = frozenset({"front_desk", "manager"})


@dataclass(frozen=True)
class Page:
    """One page of the app, declared once: the navigation and the access matrix are both read from PAGES.

    `key` is the page file's stem (app/app_pages/<key>.py) and its URL path.
    """

    key: str
    title: str
    icon: str
    section: str
    roles: frozenset[str]

    @property
    def file(self) -> str:
        return f"{self.key}.py"


def _page(key: str, title: str, icon: str, section: str, *roles: str) -> Page:
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(
            f"app/lib/auth.py PAGES, page {key}: unknown role(s) {', '.join(unknown)}; use one of {', '.join(ROLES)}"
        )
    return Page(key, title, icon, section, frozenset(roles))


# The one place pages are declared, in menu order: file stem, title, icon, menu section, roles that may open it.
PAGES: tuple[Page, ...] = (
    _page("overview", "Overview", ":material/monitoring:", "Practice", "owner", "manager"),
    _page("funnel", "Funnel", ":material/filter_alt:", "Practice", "owner", "manager", "marketing", "analyst"),
    _page("referral_sources", "Referral sources", ":material/share:", "Practice", "owner", "marketing", "analyst"),
    _page("attribution", "Attribution & ROI", ":material/paid:", "Practice", "owner", "marketing", "analyst"),
    _page("leakage", "Revenue leakage", ":material/money_off:", "Practice", "owner"),
    _page("revenue", "A/R, payers & denials", ":material/account_balance:", "Practice", "owner", "manager", "analyst"),
    _page("year_over_year", "Year over year", ":material/compare_arrows:", "Practice", "owner", "manager", "analyst"),
    _page(
        "diagnoses",
        "Referrals by diagnosis",
        ":material/stethoscope:",
        "Practice",
        "owner",
        "manager",
        "marketing",
        "analyst",
    ),
    _page("work_queue", "Work queue", ":material/checklist:", "Operations", "front_desk", "manager", "owner"),
    _page("therapists", "Therapists", ":material/groups:", "Operations", "owner", "manager", "analyst"),
    _page("no_show", "No-show risk", ":material/event_busy:", "Operations", "owner", "manager"),
    _page("forecast", "Demand forecast", ":material/trending_up:", "Operations", "owner", "manager"),
    _page("upload", "Upload data", ":material/upload_file:", "Data", "admin", "manager"),
    _page("data_health", "Data health", ":material/health_and_safety:", "Data", "admin", "analyst"),
    _page("sql", "SQL", ":material/terminal:", "Data", "analyst"),
    _page("admin", "Admin", ":material/settings:", "Data", "admin"),
)
PAGE_BY_KEY: Mapping[str, Page] = {p.key: p for p in PAGES}
# Views of PAGES for the checks below and the Admin page's matrix.
PAGE_ACCESS: Mapping[str, frozenset[str]] = {p.key: p.roles for p in PAGES}
PAGE_TITLES: Mapping[str, str] = {p.key: p.title for p in PAGES}

# First page each role lands on.
HOME_PAGE: Mapping[str, str] = {
    "owner": "overview",
    "manager": "overview",
    "front_desk": "work_queue",
    "marketing": "referral_sources",
    "analyst": "funnel",
    "admin": "data_health",
}


# Roles that may load data from the browser (the Upload page): the first-run screen points the others to them.
UPLOAD_ROLES: frozenset[str] = PAGE_ACCESS["upload"]


def home_page_file(role: str) -> str:
    """The role's home page as st.page_link / st.switch_page take it (relative to streamlit_app.py)."""
    return f"app_pages/{PAGE_BY_KEY[HOME_PAGE[role]].file}"


def page_file(key: str) -> str:
    return f"app_pages/{PAGE_BY_KEY[key].file}"


class AccessDenied(PermissionError):
    """A role asked for a page or data it may not see."""


@dataclass(frozen=True)
class User:
    """The person using the app, as the server sees them (never taken from the browser)."""

    email: str
    role: str
    clinics: tuple[str, ...] | None = None  # None = every clinic
    demo: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")

    @property
    def scope(self) -> Scope:
        return Scope(role=self.role, clinics=self.clinics)


@dataclass(frozen=True)
class Scope:
    """What one query may return: which clinics, and whether identities are allowed.

    Part of every cache key, so a cached result computed for one scope is never served to another.
    """

    role: str
    clinics: tuple[str, ...] | None = None

    @property
    def phi(self) -> bool:
        return self.role in PHI_ROLES

    @property
    def key(self) -> str:
        clinics = "*" if self.clinics is None else ",".join(sorted(self.clinics))
        return f"{self.role}|{clinics}"

    def effective_clinics(self, requested: Iterable[str] | None) -> tuple[str, ...] | None:
        """Clinics a query may touch: the request intersected with the scope (None = all)."""
        wanted = None if requested is None else tuple(dict.fromkeys(requested))
        if self.clinics is None:
            return wanted
        if wanted is None:
            return tuple(self.clinics)
        allowed = set(self.clinics)
        return tuple(c for c in wanted if c in allowed)


def can_view(role: str, page: str) -> bool:
    return role in PAGE_ACCESS.get(page, frozenset())


def pages_for(role: str) -> list[str]:
    """Pages a role may open, in menu order."""
    return [page for page in PAGE_ACCESS if can_view(role, page)]


def require_page(user: User, page: str) -> None:
    """Raise AccessDenied unless the user's role may open the page (pages turn this into a refusal)."""
    if not can_view(user.role, page):
        allowed = ", ".join(ROLE_LABELS[r] for r in ROLES if r in PAGE_ACCESS[page])
        raise AccessDenied(
            f"The {PAGE_TITLES[page]} page is not available to the {ROLE_LABELS[user.role]} role (open to: {allowed})."
        )


# ----------------------------------------------------------------------------------------------- roles file


@dataclass(frozen=True)
class RoleEntry:
    role: str
    clinics: tuple[str, ...] | None = None
    name: str = ""


@dataclass(frozen=True)
class RolesConfig:
    """Email -> role and clinics, from roles.yml. Emails compare case-insensitively."""

    users: Mapping[str, RoleEntry] = field(default_factory=dict)
    domains: Mapping[str, RoleEntry] = field(default_factory=dict)
    source: str = ""
    claim: str = ""  # the IdP claim holding the user's groups (roles_claim:), else [auth] roles_claim
    claim_roles: Mapping[str, RoleEntry] = field(default_factory=dict)  # group -> role, in roles.yml order

    def lookup(self, email: str | None, groups: Iterable[str] = ()) -> RoleEntry | None:
        """An explicit user entry wins, then the first `claim_roles` group the user is in, then the domain."""
        email = (email or "").strip().lower()
        if email in self.users:
            return self.users[email]
        member = {str(g).strip().lower() for g in groups}
        for group, entry in self.claim_roles.items():
            if group in member:
                return entry
        if not email:
            return None
        return self.domains.get(email.rpartition("@")[2])


def claim_values(value: object) -> tuple[str, ...]:
    """An IdP claim as a list of group names: a list, or one string (comma or space separated)."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple, set)):
        return tuple(str(v) for v in value)
    return tuple(v for v in str(value).replace(",", " ").split() if v)


def roles_file_path(home: Path) -> Path:
    """$PTPULSE_ROLES_FILE, else $PTPULSE_HOME/roles.yml."""
    env = os.environ.get("PTPULSE_ROLES_FILE")
    return Path(env).expanduser() if env else home / "roles.yml"


def _entry(raw: object, where: str) -> RoleEntry:
    if isinstance(raw, str):
        raw = {"role": raw}
    if not isinstance(raw, dict) or "role" not in raw:
        raise ValueError(f"{where}: expected a role name or a mapping with 'role' (and optional 'clinics')")
    role = str(raw["role"])
    if role not in ROLES:
        raise ValueError(f"{where}: unknown role {role!r}; expected one of {', '.join(ROLES)}")
    clinics = raw.get("clinics")
    if clinics in (None, "*", "all", ["*"]):
        clinics_t = None
    elif isinstance(clinics, (list, tuple)):
        clinics_t = tuple(str(c) for c in clinics)
    else:
        clinics_t = (str(clinics),)
    return RoleEntry(role=role, clinics=clinics_t, name=str(raw.get("name", "")))


def parse_roles(text: str, source: str = "roles.yml") -> RolesConfig:
    """Parse roles.yml. Errors name the file and the entry so an admin can fix it."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping with 'users:' (and optional 'domains:')")
    users = {str(k).strip().lower(): _entry(v, f"{source}: users.{k}") for k, v in (data.get("users") or {}).items()}
    domains = {
        str(k).strip().lower(): _entry(v, f"{source}: domains.{k}") for k, v in (data.get("domains") or {}).items()
    }
    claim_roles = {
        str(k).strip().lower(): _entry(v, f"{source}: claim_roles.{k}")
        for k, v in (data.get("claim_roles") or {}).items()
    }
    claim = str(data.get("roles_claim") or "").strip()
    return RolesConfig(users=users, domains=domains, source=source, claim=claim, claim_roles=claim_roles)


def load_roles(path: Path) -> RolesConfig:
    if not path.exists():
        return RolesConfig(source=str(path))
    return parse_roles(path.read_text(encoding="utf-8"), source=str(path))


def email_unverified(value: object) -> bool:
    """True when the IdP's `email_verified` claim says the address is NOT verified (false, or "false" as some
    IdPs send it). Absent (None) is not "unverified": many IdPs (Entra ID work accounts, Google Workspace's
    own domains) send no such claim for addresses their directory issued."""
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("false", "0", "no", "")
    return value is False or value == 0


def user_from_roles(
    email: str, config: RolesConfig, name: str = "", groups: Iterable[str] = (), email_verified: object = None
) -> User | None:
    """The signed-in user's role and clinics (from their email, or the IdP groups in `groups`), or None when
    the roles file knows neither -- or when the IdP says the email is not verified (`email_unverified`):
    anyone can type someone@clinic.com into a self-registered or multi-tenant account, and a `domains:` rule
    (or a users: entry) would hand them that role. Group matches are refused too: the app's audit log would
    record an address nobody proved is theirs."""
    if email_unverified(email_verified):
        return None
    entry = config.lookup(email, groups)
    if entry is None:
        return None
    return User(email=email, role=entry.role, clinics=entry.clinics, name=entry.name or name)


# ----------------------------------------------------------------------------------------------- demo mode


# The demo's role picker (app/streamlit_app.py) and the URL query parameter that keeps its choice across a
# browser reload (?role=admin). Demo mode only: a signed-in user's role comes from roles.yml, never the URL.
DEMO_ROLE_LABEL = "Demo role"
DEMO_ROLE_PARAM = "role"


def demo_role_from_env(default: str = "owner") -> str:
    role = os.environ.get("PTPULSE_DEMO_ROLE", "").strip().lower()
    return role if role in ROLES else default


def parse_demo_role(value: object) -> str | None:
    """A role from the URL (`admin`, `front-desk`, `Administrator`, ...), or None when it names no role."""
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    text = str(value or "").strip().lower()
    if not text:
        return None
    key = text.replace("-", "_").replace(" ", "_")
    if key in ROLES:
        return key
    return next((r for r, label in ROLE_LABELS.items() if label.lower() == text), None)


def initial_demo_role(query_value: object = None, has_build: bool = True) -> str:
    """The demo's role when a browser session starts: the URL's ?role= (the picker writes it, so a reload
    keeps the choice), else $PTPULSE_DEMO_ROLE, else Administrator while nothing is built yet (the person
    trying the app with their own exports must reach Upload data, which owners cannot open), else owner."""
    from_url = parse_demo_role(query_value)
    if from_url:
        return from_url
    return demo_role_from_env("owner" if has_build else "admin")


def demo_switch_hint(roles: Iterable[str]) -> str:
    """Demo mode, a role that cannot do something: which role to pick, under the picker's real label."""
    labels = [f"**{ROLE_LABELS[r]}**" for r in ROLES[::-1] if r in set(roles)]  # Administrator first
    who = labels[0] + (f" (or {', '.join(labels[1:])})" if len(labels) > 1 else "")
    return f"In this demo that is you: choose {who} under **{DEMO_ROLE_LABEL}** in the sidebar."


def demo_clinics(role: str, all_clinics: list[str]) -> tuple[str, ...] | None:
    """Demo users' clinics: $PTPULSE_DEMO_CLINICS (comma list or *), else the first clinic for
    clinic-scoped roles (so demo front desk shows real scoping), else every clinic."""
    env = os.environ.get("PTPULSE_DEMO_CLINICS", "").strip()
    if env == "*":
        return None
    if env:
        return tuple(c.strip() for c in env.split(",") if c.strip())
    if role in CLINIC_SCOPED_BY_DEFAULT and all_clinics:
        return (all_clinics[0],)
    return None


def demo_user(role: str, all_clinics: list[str]) -> User:
    return User(
        email=f"demo-{role.replace('_', '-')}@ptpulse.local",
        role=role,
        clinics=demo_clinics(role, all_clinics),
        demo=True,
        name=f"Demo {ROLE_LABELS[role].lower()}",
    )
