import numpy as np

from leadscoring.config import Bucket
from leadscoring.serving.payloads import crm_payloads
from leadscoring.serving.scorer import assign_buckets, to_score

BUCKETS = [
    Bucket(name="HOT", min_score=80, action="Call_Immediately"),
    Bucket(name="WARM", min_score=50, action="Nurture"),
    Bucket(name="COLD", min_score=0, action="Auto"),
]


def test_score_is_rounded_percentage():
    assert to_score([0.0, 0.004, 0.005, 0.494, 0.795, 0.7949, 1.0]).tolist() == [0, 0, 1, 49, 80, 79, 100]


def test_bucket_boundaries():
    names, actions = assign_buckets(np.array([100, 80, 79, 50, 49, 0]), BUCKETS)
    assert names.tolist() == ["HOT", "HOT", "WARM", "WARM", "COLD", "COLD"]
    assert actions.tolist()[0] == "Call_Immediately" and actions.tolist()[-1] == "Auto"


def test_crm_payload_format():
    import pandas as pd

    scores = pd.DataFrame({"id": [660728], "score": [85], "bucket": ["HOT"], "recommended_action": ["Call_Immediately"]})
    assert crm_payloads(scores, "id") == [
        {
            "lead_id": "660728",
            "custom_fields": {"predictive_score": 85, "score_bucket": "HOT", "recommended_action": "Call_Immediately"},
        }
    ]
