"""Who may reach and use a cluster, on real gateways, schedulers and pilots (local sites):
only clients with its certificate, only its owner, within the per-user limits; worker leases
only through the gateway, and opened only with a key the gateway has.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from distributed import Client

import farside
from farside_protocol import Conflict
from support.clusters import cluster_fixtures
from support.harness import GatewayProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.dask]

gateway, gw = cluster_fixtures()


def test_a_client_without_the_clusters_certificate_is_refused(gw: farside.Gateway) -> None:
    from distributed.security import Security

    with gw.new_cluster(workers=0) as cluster:
        stranger = Security.temporary()  # a valid certificate, but not the cluster's
        with pytest.raises((OSError, TimeoutError)):
            Client(cluster.scheduler_address, security=stranger, timeout=5)
        with pytest.raises((OSError, TimeoutError, TypeError)):
            Client(cluster.scheduler_address.replace("tls://", "tcp://"), timeout=5)


def test_a_lease_whose_key_this_gateway_cannot_open_goes_back_alone(
    gateway: GatewayProcess, gw: farside.Gateway
) -> None:
    """Replicas with different ``encryption_keys``: the lease a replica cannot open is given
    back as a system error with the reason; the pilot lives on, and the cluster's
    replacement worker (sealed with a key this gateway has) joins."""
    from farside_gateway.clusters.sealing import Sealer

    admin = farside.Gateway(
        gateway.url, token=gateway.make_user_token("ops", admin=True), set_as_default=False
    )
    admin.set_site_status("gpu", "offline")  # the GPU lease waits while the test re-seals it
    try:
        cluster = gw.new_cluster(
            workers=0, groups={"gpu": {"workers": 1, "gpus": 1, "memory": "1 GiB"}}
        )
        (lease,) = wait_until(lambda: gw.jobs(kind="dask-worker", group=cluster.name))
        with sqlite3.connect(gateway.state_dir / "farside.db") as db:
            (payload,) = db.execute("select payload from jobs where id = ?", (lease.id,)).fetchone()
            body = json.loads(payload)
            body["tls_key"] = Sealer(["a key no replica here has"]).seal("not the real key")
            resealed = json.dumps(body).encode()
            db.execute(
                "update jobs set payload = ?, payload_size = ? where id = ?",
                (resealed, len(resealed), lease.id),
            )
        admin.set_site_status("gpu", "online")
        with cluster, Client(cluster) as client:
            client.wait_for_workers(1, timeout=60)
            bad = gw.job(lease.id)
            assert bad.state == "failed"
            assert "sealed with an encryption key this gateway does not have" in (bad.error or "")
            assert bad.error_class == "system"
            gpu_pilots = [p for p in gw.pilots() if p.site == "gpu"]
            assert gpu_pilots
            assert all(p.state == "running" for p in gpu_pilots)
    finally:
        admin.set_site_status("gpu", "online")
        admin.close()


def test_another_user_cannot_see_or_use_the_cluster(
    gateway: GatewayProcess, gw: farside.Gateway
) -> None:
    with gw.new_cluster(workers=0) as cluster:
        bob = farside.Gateway(
            gateway.url, token=gateway.make_user_token("bob"), set_as_default=False
        )
        try:
            assert bob.clusters() == []
            for method, path in [
                ("GET", f"/clusters/{cluster.name}"),
                ("GET", f"/clusters/{cluster.name}/credentials"),
                ("DELETE", f"/clusters/{cluster.name}"),
            ]:
                response = bob._api.client.request(method, f"/api/v1{path}")
                assert response.status_code == 404, (method, path, response.text)
        finally:
            bob.close()
        assert cluster.refresh().state == "running"


def test_per_user_limits(gw: farside.Gateway) -> None:
    made = [gw.new_cluster(workers=0) for _ in range(3)]
    try:
        with pytest.raises(Conflict, match="most allowed is 3"):
            gw.new_cluster(workers=0)
        with pytest.raises(Conflict, match="most one user may have is 8"):
            made[0].scale(9)
        assert made[0].refresh().groups[0].spec.workers == 0
    finally:
        for cluster in made:
            cluster.close()


def test_users_cannot_submit_worker_leases_themselves(gateway: GatewayProcess) -> None:
    with gateway.http(gateway.user_token) as http:
        response = http.post("/jobs", json={"jobs": [{"kind": "dask-worker", "payload": "e30="}]})
    assert response.status_code == 422
    assert "gw.new_cluster" in response.json()["error"]["message"]
