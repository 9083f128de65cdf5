"""ARTIM and idle timeouts: a connection that never sends an A-ASSOCIATE-RQ, and an
association that goes silent, are closed by the server after the configured time, while
other clients keep being served."""
import socket
import time

import dimse

TIMEOUTS = "\n[dimse]\nartim_timeout_s = 2\nidle_timeout_s = 3\n"


def test_silent_connection_and_idle_association_are_closed(server_factory):
    srv = server_factory(extra_config=TIMEOUTS)
    silent = socket.create_connection(("127.0.0.1", srv.port))
    assoc, _max_pdu = dimse.raw_associate(srv.port)
    t0 = time.time()
    assert dimse.echo(srv.port) == 0, "others are served while these wait"
    closed, _ = dimse.read_until_closed(silent, timeout=15)
    artim = time.time() - t0
    assert closed, "a connection without A-ASSOCIATE-RQ must be closed (ARTIM)"
    closed, _ = dimse.read_until_closed(assoc, timeout=15)
    idle = time.time() - t0
    assert closed, "a silent association must be closed (idle timeout)"
    assert 1.0 <= artim <= 10, artim
    assert 2.0 <= idle <= 12, idle
    assert dimse.echo(srv.port) == 0
    silent.close()
    assoc.close()


def test_a_pdu_trickled_byte_by_byte_is_cut_at_the_idle_timeout(server_factory):
    """A peer that sends one byte now and then renews every read's timeout; the PDU as a whole
    must still arrive within the idle timeout, or the association is aborted."""
    srv = server_factory(extra_config=TIMEOUTS)
    assoc, _max_pdu = dimse.raw_associate(srv.port)
    pdu = dimse.p_data(1, dimse.c_store_rq_command("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"),
                       command=True, last=True)
    t0 = time.time()
    closed = False
    for b in pdu:  # one byte a second: about 100 s for the whole PDU
        try:
            assoc.sendall(bytes([b]))
        except OSError:
            closed = True
            break
        assoc.settimeout(1.0)
        try:
            if assoc.recv(4096) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except OSError:
            closed = True
            break
    elapsed = time.time() - t0
    assert closed, "the trickled PDU was never cut"
    assert elapsed <= 12, elapsed
    assert dimse.echo(srv.port) == 0
    assoc.close()


def test_a_connection_over_the_limit_gets_an_associate_reject(server_factory):
    """PS3.8 9.3.4: over the association limit the requestor is told why (rejected-transient,
    service-provider, local-limit-exceeded), not just disconnected."""
    srv = server_factory(extra_config="\n[dimse]\nmax_associations = 2\n")
    held = [dimse.raw_associate(srv.port)[0] for _ in range(2)]
    time.sleep(0.3)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(dimse.build_assoc_rq())
    ptype, body = dimse.recv_pdu(s)
    s.close()
    assert ptype == 0x03, ptype
    assert tuple(body[1:4]) == (2, 3, 2), body.hex()
    for h in held:
        h.close()
    time.sleep(0.5)
    assert dimse.echo(srv.port) == 0
