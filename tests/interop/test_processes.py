"""The interop harness itself: ports, the test CA, and a TLS Synapse ready to federate.

These prove the pieces other interop tests stand on, so that a failure there points at
Ruma and not at the harness.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial.unittest import TestCase

from tests.interop.processes import free_port, make_test_ca, start_synapse


class HarnessTests(TestCase):
    def test_free_port_can_be_bound_on_loopback(self) -> None:
        """free_port returns a loopback port that a server can listen on at once."""
        port = free_port()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            s.listen()

    def test_leaf_certificate_is_signed_by_the_ca_for_loopback_names(self) -> None:
        """A leaf from make_test_ca carries IP:127.0.0.1, IP:::1 and DNS:localhost and its
        signature verifies with the CA's key."""
        ca = make_test_ca(self.mktemp())
        leaf = ca.issue()
        ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
        cert = x509.load_pem_x509_certificate(leaf.cert_path.read_bytes())
        public_key = ca_cert.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        assert cert.signature_hash_algorithm is not None
        public_key.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(sans.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual(
            set(sans.get_values_for_type(x509.IPAddress)),
            {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")},
        )


class SynapseHarnessTests(TestCase):
    def test_tls_synapse_serves_its_keys_under_the_test_ca(self) -> None:
        """A Synapse started with a test-CA leaf serves /_matrix/key/v2/server over TLS on
        127.0.0.1, verifiable with only the test CA, under the name 127.0.0.1:PORT; stop()
        ends its process."""
        ca = make_test_ca(self.mktemp())
        synapse = start_synapse(self, tls=ca.issue())
        self.assertEqual(synapse.server_name, f"127.0.0.1:{synapse.federation_port}")
        context = ssl.create_default_context(cafile=str(ca.cert_path))
        with urllib.request.urlopen(
            synapse.federation_url + "/_matrix/key/v2/server", context=context, timeout=10
        ) as response:
            keys = json.loads(response.read())
        self.assertEqual(keys["server_name"], synapse.server_name)
        self.assertTrue(keys["verify_keys"])

        pid = synapse.pid
        assert pid is not None
        synapse.stop()
        self.assertRaises(ProcessLookupError, os.kill, pid, 0)
