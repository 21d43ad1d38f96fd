"""R-EXT-03 webhook retries, pure: the delay before each retry doubles from 2 s and stops growing at 10 minutes."""
from identity_service.webhooks import MAX_ATTEMPTS, next_delay


def test_R_EXT_03_webhook_retries_back_off_and_are_capped():
    delays = [next_delay(n) for n in range(1, MAX_ATTEMPTS + 1)]
    assert delays[:4] == [2, 4, 8, 16] and max(delays) == 600 and delays == sorted(delays)
    assert sum(delays[:MAX_ATTEMPTS - 1]) > 3600, "a receiver down for an hour still gets the webhook"
