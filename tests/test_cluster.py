"""Cluster scoring as on a real cluster (issue "Distributed scoring that works on a real
cluster"): the verified model travels to the workers as bytes, inputs and outputs are URLs
(an S3-compatible server started by the test, reached through s3fs), a failed job leaves
the previous output as it was, and a worker with other library versions is refused."""

from __future__ import annotations

import shutil
import socket

import pandas as pd
import pytest

from leadscoring import cli
from leadscoring.artifacts import ModelIntegrityError
from leadscoring.config import AlertsConfig
from leadscoring.errors import LeadDataError
from leadscoring.serving.batch import score_file
from leadscoring.serving.distributed import ModelPayload, run_on_cluster, score_dask
from leadscoring.training.explanations import reason_text

pytestmark = pytest.mark.slow
AT_COLUMNS = ["scored_at"]  # one scoring time per job: differs between the engines


def _local_reference(cfg, leads, models, tmp_path) -> pd.DataFrame:
    leads.to_csv(tmp_path / "all.csv", sep=";", index=False)
    score_file(cfg, tmp_path / "all.csv", tmp_path / "local.csv", models_dir=models)
    return pd.read_csv(tmp_path / "local.csv", dtype={"id": str}).sort_values("id").reset_index(drop=True)


def _parts(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames).sort_values("id").reset_index(drop=True)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a["id"].tolist() == b["id"].tolist()
    pd.testing.assert_series_equal(a["probability"], b["probability"], atol=1e-9, check_exact=False)
    pd.testing.assert_frame_equal(a.drop(columns=["probability", *AT_COLUMNS]), b.drop(columns=["probability", *AT_COLUMNS]))


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c, Client(c) as client:
        yield client


def test_workers_never_read_the_client_model_files(cfg, sample, small_models, tmp_path, cluster):
    models = tmp_path / "models"
    shutil.copytree(small_models, models)
    leads = sample.drop(columns="compra")
    local = _local_reference(cfg, leads, models, tmp_path)
    for name, rows in (("a", slice(0, 400)), ("b", slice(400, None))):
        leads.iloc[rows].to_csv(tmp_path / f"leads_{name}.csv", sep=";", index=False)
    payload = ModelPayload.from_client(cfg, models)  # verified once, on the client
    shutil.move(models, tmp_path / "moved-away")  # nobody can read the models folder any more
    files = [str(tmp_path / "leads_a.csv"), str(tmp_path / "leads_b.csv")]
    run_on_cluster(cluster, payload, files, str(tmp_path / "out"))
    assert (tmp_path / "out" / "_SUCCESS").is_file()
    _same(_parts([pd.read_csv(p, dtype={"id": str}) for p in sorted((tmp_path / "out").glob("part-*.csv"))]), local)


def test_a_worker_with_other_library_versions_is_refused(cfg, small_models, tmp_path, cluster, sample):
    payload = ModelPayload.from_client(cfg, small_models)
    # as if this worker had another scikit-learn than the one the model was made with
    payload.manifest = {**payload.manifest, "versions": {**payload.manifest["versions"], "scikit-learn": "0.24.2"}}
    sample.drop(columns="compra").head(50).to_csv(tmp_path / "few.csv", sep=";", index=False)
    with pytest.raises(ModelIntegrityError, match=r"scikit-learn 0\.24\.2 \(worker tcp://"):
        run_on_cluster(cluster, payload, [str(tmp_path / "few.csv")], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.fixture()
def s3(monkeypatch):
    """A local S3-compatible server (moto); credentials and endpoint only in the environment."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir("leads-bucket")
    yield fs
    server.stop()


def test_object_storage_in_and_out_and_a_failed_job_leaves_the_previous_output(cfg, sample, small_models, tmp_path, s3, receiver):
    from dask.distributed import LocalCluster

    leads = sample.drop(columns="compra")
    local = _local_reference(cfg, leads, small_models, tmp_path)
    s3.pipe("leads-bucket/csv/leads_a.csv", leads.iloc[:400].to_csv(sep=";", index=False).encode())
    s3.pipe("leads-bucket/csv/leads_b.csv", leads.iloc[400:].to_csv(sep=";", index=False).encode())
    for name, rows in (("a", slice(0, 300)), ("b", slice(300, None))):
        s3.pipe(f"leads-bucket/pq/leads_{name}.parquet", leads.iloc[rows].astype(str).to_parquet(index=False))
    # workers started after the environment is set: they reach the bucket with the same chain
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        res = score_dask(
            cfg,
            "s3://leads-bucket/csv/leads_*.csv",
            "s3://leads-bucket/scores",
            models_dir=small_models,
            scheduler=c.scheduler_address,
            history=False,
        )
        assert res["leads"] == len(leads) and res["partitions"] == 2
        assert sorted(p.rsplit("/", 1)[1] for p in s3.ls("leads-bucket/scores")) == ["_SUCCESS", "part-00000.csv", "part-00001.csv"]
        _same(_parts([pd.read_csv(s3.open(p), dtype={"id": str}) for p in sorted(s3.glob("leads-bucket/scores/part-*"))]), local)
        assert res["parts"] == ["s3://leads-bucket/scores/part-00000.csv", "s3://leads-bucket/scores/part-00001.csv"]
        # `score --engine dask` alerts the leads of the parts it wrote, in object storage too
        alerting = cfg.model_copy(update={"alerts": AlertsConfig(webhook_url=receiver.url, backoff=0.01, max_messages=1000)})
        alerting = alerting.model_copy(update={"paths": cfg.paths.model_copy(update={"crm_state": str(tmp_path / "state")})})
        cli._alert_leads(alerting, res["parts"])
        hot = local.loc[local["bucket"] == "HOT", "id"].tolist()
        assert hot and len(receiver.texts()) == len(hot)
        score_dask(
            cfg,
            "s3://leads-bucket/pq/*.parquet",
            "s3://leads-bucket/scores_pq",
            models_dir=small_models,
            scheduler=c.scheduler_address,
            history=False,
        )
        pq_parts = _parts([pd.read_parquet(s3.open(p)) for p in sorted(s3.glob("leads-bucket/scores_pq/part-*"))])
        assert pq_parts["id"].tolist() == local["id"].tolist()
        for col in ("score", "bucket", "grade", "segment", "trend", "model_version"):
            assert pq_parts[col].tolist() == local[col].tolist(), col
        assert [reason_text(list(r)) for r in pq_parts["reasons"]] == local["reasons"].tolist()
        before = {p: s3.cat(p) for p in s3.find("leads-bucket/scores")}
        bad = leads.iloc[:5].to_csv(sep=";", index=False).splitlines()
        bad[3] = bad[3].rsplit(";", 2)[0]  # a short row: line 4 of the second file
        s3.pipe("leads-bucket/csv/leads_c.csv", ("\n".join(bad) + "\n").encode())
        with pytest.raises(LeadDataError, match=r"s3://leads-bucket/csv/leads_c\.csv.*line 4"):
            score_dask(
                cfg,
                "s3://leads-bucket/csv/leads_*.csv",
                "s3://leads-bucket/scores",
                models_dir=small_models,
                scheduler=c.scheduler_address,
                history=False,
            )
    assert {p: s3.cat(p) for p in s3.find("leads-bucket/scores")} == before  # previous output intact
    assert not [p for p in s3.ls("leads-bucket") if ".tmp-" in p]  # no temporary prefix left behind


def test_an_events_configuration_is_refused_before_any_work(cfg, tmp_path):
    from leadscoring.config import EventsConfig

    events = EventsConfig(path="events/*.json", lead_key="id", features=[{"name": "views", "kind": "count"}])
    (tmp_path / "a.csv").write_text("id\n1\n")
    with pytest.raises(LeadDataError, match="events section"):
        score_dask(cfg.model_copy(update={"events": events}), str(tmp_path / "a.csv"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
