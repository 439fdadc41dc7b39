"""Metering: the usage ledger fed by events (tokens of inference requests, GPU time of jobs and
deployments), prices, credits and balances, and usage reports."""

from __future__ import annotations

from dataclasses import dataclass

from suanli_auth.metering.balances import Balances
from suanli_auth.metering.ledger import UsageLedger
from suanli_auth.metering.prices import PriceBook
from suanli_auth.metering.reports import UsageReports


@dataclass(frozen=True, slots=True)
class Metering:
    ledger: UsageLedger
    prices: PriceBook
    reports: UsageReports
    balances: Balances
