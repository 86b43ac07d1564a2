"""A real OCI registry on loopback for the push and pull tests: Debian's docker-registry (the CNCF
distribution server), over TLS with a certificate from a CA made here, with an htpasswd login, or
anonymous. skopeo is the independent client that reads back what mlpack wrote.

The password reaches the server only as a bcrypt hash and skopeo only through an auth file
(REGISTRY_AUTH_FILE), so it is in no child process's argv here either.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlpack.runtime.lifetime import parent_death_signal

USERNAME, PASSWORD = "mlpack-ci", "Reg1stry-Pass-w0rd"


class RegistryUnavailable(Exception):
    pass


@dataclass(frozen=True)
class LoopbackRegistry:
    host: str  # 127.0.0.1:PORT
    ca: Path  # the PEM of the CA that signed its certificate
    cert_dir: Path  # the CA as skopeo's --cert-dir wants it
    auth_file: Path  # skopeo's REGISTRY_AUTH_FILE, with the login
    login: bool
    tls: bool = True

    def skopeo(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """skopeo with this registry's CA and login; `--tls-verify` stays on."""
        command, rest = str(args[0]), [str(a) for a in args[1:]]
        where = ["--cert-dir", str(self.cert_dir)]
        if command == "copy":  # the destination's TLS options; the source is an oci: folder or this registry
            where = ["--src-cert-dir", str(self.cert_dir), "--dest-cert-dir", str(self.cert_dir)]
        if not self.tls:
            where = ["--dest-tls-verify=false"] if command == "copy" else ["--tls-verify=false"]
        env = {**os.environ, "REGISTRY_AUTH_FILE": str(self.auth_file)}
        done = subprocess.run(
            ["skopeo", command, *where, *rest], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"skopeo {command} {' '.join(rest)}: {done.stderr[-2000:]}")
        return done


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def make_ca_and_certificate(
    folder: Path, name: str = "mlpack test registry CA", address: str = "127.0.0.1"
) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1, localhost and `address` signed by it: (ca, cert, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def subject(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(subject(name))
        .issuer_name(subject(name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    ips = sorted({"127.0.0.1", address})
    names = [*(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    plain = serialization.NoEncryption()
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, plain))
    return paths


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextmanager
def token_service(root: Path, cert: Path, key: Path) -> Iterator[tuple[str, Path]]:
    """The Docker token protocol's other half, on loopback over TLS: GET /token with the Basic login
    answers an ES256 JWT granting the scopes asked for (a wrong login: 401). Yields (realm, signing cert)."""
    import http.server
    import ssl
    import threading
    import urllib.parse

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.x509.oid import NameOID

    signing_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlpack test token signer")])
    signer = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(signing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(signing_key, hashes.SHA256())
    )
    bundle = root / "token-signer.pem"
    bundle.write_bytes(signer.public_bytes(serialization.Encoding.PEM))
    expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            issued = int(time.time())
            claims = {"iss": "mlpack-test-issuer", "sub": USERNAME, "aud": query.get("service", [""])[0]}
            claims |= {"exp": issued + 300, "nbf": issued - 10, "iat": issued, "jti": os.urandom(8).hex()}
            claims["access"] = access
            der = signer.public_bytes(serialization.Encoding.DER)
            header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
            signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
            r, s = decode_dss_signature(signing_key.sign(signed.encode(), ec.ECDSA(hashes.SHA256())))
            token = f"{signed}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
            body = json.dumps({"token": token, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/token", bundle
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def loopback_registry(
    root: Path, *, login: bool = True, token: bool = False, tls: bool = True, address: str = "127.0.0.1"
) -> Iterator[LoopbackRegistry]:
    """docker-registry serving TLS on 127.0.0.1:PORT from `root`, stopped (and only it) on the way out.

    `login`: an htpasswd login (Basic); `token`: Bearer tokens from `token_service` for that login;
    not `tls`: plain HTTP (as a registry on a developer's loopback often is); `address`: another of this
    machine's own addresses to listen on instead (the Docker engine skips TLS checks for 127.0.0.0/8)."""
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None or shutil.which("skopeo") is None:
        raise RegistryUnavailable("docker-registry or skopeo is missing (apt-get install docker-registry skopeo)")
    import bcrypt

    ca, cert, key = make_ca_and_certificate(root / "tls", address=address)
    cert_dir = root / "certs"
    cert_dir.mkdir()
    shutil.copyfile(ca, cert_dir / "ca.crt")
    port = free_port(address)
    host = f"{address}:{port}"
    with ExitStack() as stack:
        auth = ""
        if token:
            realm, bundle = stack.enter_context(token_service(root, cert, key))
            auth = (
                f"auth:\n  token:\n    realm: {realm}\n    service: mlpack-test\n    issuer: mlpack-test-issuer\n"
                f"    rootcertbundle: {bundle}\n"
            )
        elif login:
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=6))
            (root / "htpasswd").write_bytes(USERNAME.encode() + b":" + hashed + b"\n")
            auth = f"auth:\n  htpasswd:\n    realm: mlpack-test\n    path: {root / 'htpasswd'}\n"
        (root / "config.yml").write_text(
            f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {host}\n" + (f"  tls:\n    certificate: {cert}\n    key: {key}\n" if tls else "") + auth,
            encoding="utf-8",
        )
        login = login or token
        basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode() if login else ""
        auth_file = root / "auth.json"
        auth_file.write_text(json.dumps({"auths": {host: {"auth": basic}} if login else {}}), encoding="utf-8")
        log = stack.enter_context((root / "registry.log").open("wb"))
        command = [binary, "serve", str(root / "config.yml")]
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=parent_death_signal())
        stack.callback(_stop, server)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection((address, port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    said = (root / "registry.log").read_text()
                    raise RegistryUnavailable(f"docker-registry did not start: {said}") from None
                time.sleep(0.1)
        yield LoopbackRegistry(host, ca, cert_dir, auth_file, login, tls)


def own_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one besides loopback."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the route
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
