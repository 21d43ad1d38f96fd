"""The dispatch service's own settings: the common ones plus its clocks' knobs, each read from the environment
variable of the same name (upper case) when `create_app()` is given no settings; the defaults are the domain's
(`*Params`), written once there."""
from __future__ import annotations

from dispatch_service.domain.integrity import IntegrityParams
from dispatch_service.domain.history import FollowUpParams
from dispatch_service.domain.outcomes import OutcomeParams
from dispatch_service.domain.saga import SagaParams
from dispatch_service.domain.slots import GRACE_SECONDS
from servicekit.settings import Settings


class DispatchSettings(Settings):
    service_name: str = "dispatch"
    # the saga's clock (R-DSP-08, R-DSP-14, R-DSP-03)
    dispatch_budget_answer_seconds: float = SagaParams.answer_seconds
    dispatch_budget_max_attempts: int = SagaParams.max_attempts
    dispatch_slot_grace_seconds: float = GRACE_SECONDS
    # integrity signals (R-DSP-15)
    integrity_far_km: float = IntegrityParams.far_km
    integrity_pair_cap: int = IntegrityParams.pair_cap
    integrity_sweep_seconds: float = 60
    # follow-up reminders (R-DSP-05, R-POR-06)
    follow_up_interval_months: int = FollowUpParams.interval_months
    follow_up_years: int = FollowUpParams.years
    follow_up_month_days: int = FollowUpParams.month_days
    follow_up_sweep_seconds: float = 3600
    # outcome surveys (R-REC-08); the waves as "3,12"
    outcome_survey_months: str = ",".join(map(str, OutcomeParams.waves_months))
    outcome_reminder_days: int = OutcomeParams.reminder_days
    outcome_sweep_seconds: float = 60
    # EBPM report counters (R-REC-07, R-OPS-03): the sweep recounting businesses a trigger left marked
    ebpm_sweep_seconds: float = 30
    # the saga-state gauge (metrics.py): a count over the dispatches, served by the `status` index on MongoDB but a
    # read of every dispatch on the local server (~1 s of a core at 23,000): a dashboard's minute is enough
    dispatch_states_refresh_seconds: float = 60
    fault_crash_after_slot_claim: str = ""  # test hook: "true" exits hard between the slot claim and the write

    def saga_params(self) -> SagaParams:
        return SagaParams(answer_seconds=self.dispatch_budget_answer_seconds,
                          max_attempts=self.dispatch_budget_max_attempts,
                          slot_grace_seconds=self.dispatch_slot_grace_seconds)

    def integrity_params(self) -> IntegrityParams:
        return IntegrityParams(far_km=self.integrity_far_km, pair_cap=self.integrity_pair_cap)

    def follow_up_params(self) -> FollowUpParams:
        return FollowUpParams(interval_months=self.follow_up_interval_months, years=self.follow_up_years,
                              month_days=self.follow_up_month_days)

    def outcome_params(self) -> OutcomeParams:
        return OutcomeParams(waves_months=tuple(int(m) for m in self.outcome_survey_months.split(",")),
                             reminder_days=self.outcome_reminder_days)
