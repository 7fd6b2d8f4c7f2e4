"""TLS on the API and mutual TLS for agents, against a control plane served in the
test's event loop with certificates made for the test (a CA, the server, agents'
client certificates, and a CA nobody trusts)."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from flare import tls
from flare.v1 import intent_service_pb2, intent_service_pb2_grpc
from flare.v1 import telemetry_service_pb2 as pb
from flare.v1 import telemetry_service_pb2_grpc as pb_grpc
from tests.controlplane_fixtures import Running, plane_settings, serving
from tests.telemetry_support import hello, inventory


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path

    def issue(self, folder: Path, name: str, *, server: bool = False) -> tuple[Path, Path]:
        """A certificate for `name` signed by this authority, and its key (PEM files)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        alternatives: list[x509.GeneralName] = [x509.DNSName(name)]
        if server:
            alternatives.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _write(folder, name, cert, key)


def authority(folder: Path, name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path, _ = _write(folder, name, cert, key)
    return Authority(key, cert, path)


def _write(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Secured:
    running: Running
    ca: Authority
    folder: Path

    @property
    def api(self) -> str:
        return f"127.0.0.1:{self.running.plane.grpc_port}"

    @property
    def agents(self) -> str:
        return f"127.0.0.1:{self.running.plane.agent_port}"


@pytest.fixture
async def secured(tmp_path: Path, federation_file: Path) -> AsyncIterator[Secured]:
    ca = authority(tmp_path, "flare-ca")
    cert, key = ca.issue(tmp_path, "controlplane", server=True)
    settings = plane_settings(
        tmp_path / "data",
        federation_file=federation_file,
        http_listen="127.0.0.1:0",
        tls_cert=cert,
        tls_key=key,
        agent_listen="127.0.0.1:0",
        agent_client_ca=ca.path,
        ack_interval_seconds=0.05,
    )
    async with serving(settings) as running:
        yield Secured(running, ca, tmp_path)


def list_request() -> intent_service_pb2.ListIntentsRequest:
    return intent_service_pb2.ListIntentsRequest(parent="tenants/default")


async def test_the_api_speaks_tls_only(secured: Secured) -> None:
    metadata = secured.running.metadata()
    async with grpc.aio.secure_channel(
        secured.api, tls.channel_credentials(secured.ca.path)
    ) as channel:
        stub = intent_service_pb2_grpc.IntentServiceStub(channel)
        listed = await stub.ListIntents(list_request(), metadata=metadata, timeout=10)
        assert list(listed.intents) == []

    async with grpc.aio.insecure_channel(secured.api) as plaintext:
        stub = intent_service_pb2_grpc.IntentServiceStub(plaintext)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListIntents(list_request(), metadata=metadata, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    stranger = authority(secured.folder, "nobody-ca")
    async with grpc.aio.secure_channel(
        secured.api, tls.channel_credentials(stranger.path)
    ) as untrusting:
        stub = intent_service_pb2_grpc.IntentServiceStub(untrusting)
        with pytest.raises(grpc.aio.AioRpcError) as unverified:
            await stub.ListIntents(list_request(), metadata=metadata, timeout=5)
        assert unverified.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_rest_gateway_speaks_https(secured: Secured) -> None:
    context = ssl.create_default_context(cafile=str(secured.ca.path))
    url = f"https://127.0.0.1:{secured.running.plane.http_port}/api/v1/intents"
    headers = {"Authorization": f"Bearer {secured.running.admin_token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers, ssl=context) as response:
            assert response.status == 200
            assert await response.json() == {}
        async with session.get(url, headers={}, ssl=context) as response:
            assert response.status == 401


async def stream_as(
    secured: Secured, target: str, node: str, *, cert_name: str | None
) -> grpc.StatusCode | int:
    """Opens an agent stream for `node`; the sequence it was acknowledged up to, or
    the status it was refused with."""
    cert = key = None
    if cert_name is not None:
        cert, key = secured.ca.issue(secured.folder, cert_name)
    credentials = tls.channel_credentials(secured.ca.path, cert, key)
    async with grpc.aio.secure_channel(target, credentials) as channel:
        stub = pb_grpc.TelemetryServiceStub(channel)
        call = stub.StreamTelemetry(metadata=secured.running.metadata(), timeout=10)
        try:
            await call.write(hello(inventory(node)))
            response = await call.read()
            await call.done_writing()
        except grpc.aio.AioRpcError as error:
            return error.code()
        assert isinstance(response, pb.StreamTelemetryResponse), await call.code()
        return response.acked_sequence


async def test_agents_stream_with_a_certificate_naming_their_node(secured: Secured) -> None:
    assert await stream_as(secured, secured.agents, "gpu-7", cert_name="gpu-7") == 0
    nodes = {state.inventory.node for state in secured.running.plane.hub.nodes.values()}
    assert nodes == {"gpu-7"}  # its hello was taken in before the acknowledgement


async def test_an_agent_may_speak_only_for_its_own_node(secured: Secured) -> None:
    refused = await stream_as(secured, secured.agents, "gpu-7", cert_name="gpu-8")
    assert refused == grpc.StatusCode.PERMISSION_DENIED


async def test_the_main_port_refuses_agents_when_they_need_certificates(
    secured: Secured,
) -> None:
    refused = await stream_as(secured, secured.api, "gpu-7", cert_name=None)
    assert refused == grpc.StatusCode.UNAUTHENTICATED


async def test_the_agent_port_refuses_a_client_without_a_trusted_certificate(
    secured: Secured,
) -> None:
    assert await stream_as(secured, secured.agents, "gpu-7", cert_name=None) == (
        grpc.StatusCode.UNAVAILABLE
    )
    stranger = authority(secured.folder, "rogue-ca")
    cert, key = stranger.issue(secured.folder, "gpu-7")
    credentials = tls.channel_credentials(secured.ca.path, cert, key)
    async with grpc.aio.secure_channel(secured.agents, credentials) as channel:
        call = pb_grpc.TelemetryServiceStub(channel).StreamTelemetry(
            metadata=secured.running.metadata(), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.write(hello(inventory("gpu-7")))
            await call.read()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def relay_as(secured: Secured, target: str, cluster: str, providers: list[str]) -> list[int]:
    """Relays one agent stream per provider with a certificate naming `cluster`; the
    google.rpc code each ended with (0: taken in and acknowledged)."""
    cert, key = secured.ca.issue(secured.folder, cluster)
    credentials = tls.channel_credentials(secured.ca.path, cert, key)
    async with grpc.aio.secure_channel(target, credentials) as channel:
        call = pb_grpc.TelemetryServiceStub(channel).RelayTelemetry(
            metadata=secured.running.metadata(), timeout=10
        )
        await call.write(
            pb.RelayTelemetryRequest(
                messages=[
                    pb.RelayedMessage(
                        stream=n + 1,
                        request=hello(inventory(f"node-{n}", provider=p)).SerializeToString(),
                    )
                    for n, p in enumerate(providers)
                ]
            )
        )
        codes: dict[int, int] = {}
        while len(codes) < len(providers):
            response = await call.read()
            assert isinstance(response, pb.RelayTelemetryResponse), await call.code()
            for answer in response.answers:
                if answer.HasField("ended"):
                    codes[answer.stream] = answer.ended.code
                else:
                    codes.setdefault(answer.stream, 0)
        call.cancel()
    return [codes[n + 1] for n in range(len(providers))]


async def test_a_relay_may_speak_only_for_the_nodes_of_the_cluster_its_certificate_names(
    secured: Secured,
) -> None:
    codes = await relay_as(secured, secured.agents, "lab", ["lab", "elsewhere"])
    assert codes == [0, grpc.StatusCode.PERMISSION_DENIED.value[0]]
    nodes = {state.key for state in secured.running.plane.hub.nodes.values()}
    assert nodes == {"lab/lab/node-0"}


async def test_the_main_port_refuses_relays_when_agents_need_certificates(
    secured: Secured,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await relay_as(secured, secured.api, "lab", ["lab"])
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
