"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/seed-*), encoded by pyiso8583 and with CVV2s
computed by psec: independent of ghostcard's own codec. Run it with the test suite's Python
(target/test-python/bin/python fuzz/seeds.py) when the seeds should change; the corpora are committed.

The network seeds use the cards that `ghostcard_harness::fuzzing::NetworkTarget` provisions: BIN 424242, account
digits 000000000, 000000001, ..., the test CVK, and an expiry three years ahead of the year the seeds were written
(a seed of another year is still a useful input: it is declined 54)."""

import datetime
import json
import pathlib

import iso8583
from iso8583.specs import default_ascii as spec
from psec import cvv

ROOT = pathlib.Path(__file__).parent / "corpus"
CVK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def luhn_complete(body):
    total = 0
    for position, digit in enumerate(reversed(body)):
        value = int(digit)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return body + str((10 - total % 10) % 10)


def card(index):
    number = luhn_complete("424242" + f"{index:09d}")
    today = datetime.date.today()
    yymm = f"{(today.year + 3) % 100:02d}{today.month:02d}"
    code = cvv.generate_cvv(CVK, number, yymm, "000")
    return number, yymm, code


def encoded(fields):
    raw, _ = iso8583.encode(dict(fields), spec)
    return bytes(raw)


def framed(body):
    return len(body).to_bytes(2, "big") + body


def purchase(index, stan, amount="000000001500", mti="0100", processing="000000", merchant="SHOP1"):
    number, yymm, code = card(index)
    return {
        "t": mti, "2": number, "3": processing, "4": amount, "7": "1207120000", "11": f"{stan:06d}", "14": yymm,
        "18": "5732", "19": "840", "32": "123456", "37": f"RRN{stan:09d}", "41": "TERM0001",
        "42": f"{merchant:<15}", "43": f"{'CORNER BOOKS':<25}{'SPRINGFIELD':<13}US", "48": f"9203{code}", "49": "840",
    }


def reversal(original, stan, mti="0400", replacement=None):
    fields = {k: original[k] for k in ["2", "3", "4", "32", "37", "42", "49"]}
    fields.update({"t": mti, "7": "1207120500", "11": f"{stan:06d}"})
    fields["90"] = original["t"] + original["11"] + original["7"] + f"{original['32']:0>11}" + "0" * 11
    if replacement is not None:
        fields["95"] = f"{replacement:012d}" + "0" * 30
    return fields


def messages():
    first = purchase(0, 1)
    return {
        "purchase": first,
        "incremental": purchase(0, 2, amount="000000000300"),
        "other-merchant": purchase(0, 3, merchant="SHOP2"),
        "verification": purchase(1, 4, amount="000000000000"),
        "refund": purchase(2, 5, processing="200000"),
        "cash": purchase(3, 6, processing="010000"),
        "advice": dict(purchase(4, 7, mti="0120"), **{"39": "00"}),
        "repeat": purchase(0, 1, mti="0101"),
        "financial": purchase(5, 8, mti="0200"),
        "reversal": reversal(first, 9),
        "partial-reversal": reversal(first, 10, replacement=500),
        "reversal-advice": reversal(purchase(6, 11), 12, mti="0420"),
        "echo": {"t": "0800", "7": "1207120000", "11": "000013", "70": "301"},
        "sign-on": {"t": "0800", "7": "1207120000", "11": "000014", "70": "001"},
        "unknown-card": dict(purchase(0, 15), **{"2": luhn_complete("411111111111111")}),
    }


def write(target, name, data):
    path = ROOT / target / f"seed-{name}"
    path.write_bytes(data)


def main():
    for name, fields in messages().items():
        body = encoded(fields)
        write("network_messages", name, body)
        write("iso8583_frames", name, framed(body))
    pipelined = b"".join(framed(encoded(fields)) for fields in list(messages().values())[:4])
    write("iso8583_frames", "pipelined-with-keep-alives", b"\x00\x00" + pipelined + b"\x00\x00")
    write("iso8583_frames", "garbage", framed(b"\xff\xfe not a message"))
    write("iso8583_frames", "truncated", framed(encoded(messages()["purchase"]))[:-7])
    for name, value in {
        "cvv2": "9203123",
        "two-tags": "92031231005ABCDE",
        "field-90": "0100000001120712000000000123456" + "0" * 11,
        "field-95": f"{500:012d}" + "0" * 30,
        "bad-length": "9205123",
    }.items():
        write("iso8583_subfields", name, value.encode())
    number, yymm, code = card(0)
    bodies = {
        "card": {"cardholder_id": "ch_01m98p6q5t2bzaaygy1yg2da5j", "amount": 4000, "currency": "USD",
                 "funding_source_id": "fs_01m98p6q5t2bzaaygy1yg2da5j", "plan": "pay_in_4"},
        "funding-source": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        "funding-source-number-as-json-number": {"number": 4111111111111111, "exp_month": 12, "exp_year": 2031},
        "cardholder": {"email": "ada@example.com", "name": "Ada", "country": "US", "password": "a long password"},
        "clearing": {"records": [{"id": "r1", "type": "capture", "rrn": "RRN000000001", "auth_code": "ABC123",
                                  "acquirer_id": "123456", "merchant_id": "SHOP1", "amount": 1500, "currency": "USD"}]},
        "webhook-endpoint": {"url": "https://example.com/hooks", "events": ["*"]},
        "plan-payment": {"payoff": True},
    }
    for name, body in bodies.items():
        write("api_json_bodies", name, json.dumps(body).encode())


if __name__ == "__main__":
    main()
