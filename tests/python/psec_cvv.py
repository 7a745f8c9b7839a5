"""Oracle for ghostcard's CVV tests: reads lines `CVK PAN EXPIRY SERVICE_CODE`, prints psec's CVV for each."""
import sys
import warnings

warnings.simplefilter("ignore")  # psec uses TripleDES, which cryptography marks deprecated.

import psec.cvv  # noqa: E402

for line in sys.stdin:
    key, pan, expiry, service_code = line.split()
    print(psec.cvv.generate_cvv(bytes.fromhex(key), pan, expiry, service_code))
