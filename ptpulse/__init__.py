"""PT Pulse: analytics and referral attribution for outpatient physical therapy practices."""

__version__ = "0.1.0"
