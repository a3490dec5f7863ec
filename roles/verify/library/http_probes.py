#!/usr/bin/python
"""Ansible module: a host's HTTP probes in one run, side by side, each retried until it answers
as expected. Read-only, but for the uploads a probe may send."""

import ssl
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: http_probes
short_description: Send a list of HTTP requests from the host, at once, each retried until its expected status
description:
  - Each probe is a GET, or a POST of one multipart file (field C(files), as the image2model
    upload endpoint takes it), optionally with C(Authorization: Bearer <bearer_token>). Probes
    run side by side; each is sent again, C(delay) seconds apart and at most C(retries) more
    times, until its status is one of C(expect).
  - Redirects are followed for GET only (as the uri module's C(follow_redirects=safe)); no proxy
    is used (the probes are for the host's own containers).
  - The token travels in the module's arguments (never a process argument) and is never returned.
options:
  probes:
    description: The requests, each C({name, url, method (GET or POST), auth (bool), expect (list of statuses)});
      other keys are returned as they are.
    type: list
    elements: dict
    required: true
  bearer_token:
    description: Sent as C(Authorization: Bearer <token>) by the probes with C(auth).
    type: str
    default: ""
    no_log: true
  upload:
    description: The file a POST sends, C({field, filename, content, mime_type}).
    type: dict
    default: {field: files, filename: i2m-probe.png, content: i2m-ops verification probe, mime_type: image/png}
  timeout:
    description: Seconds each request may take.
    type: float
    default: 10
  retries:
    description: How many times a probe is sent again when its status is not expected.
    type: int
    default: 0
  delay:
    description: Seconds between two tries of a probe.
    type: float
    default: 2
  validate_certs:
    description: Check the server's TLS certificate.
    type: bool
    default: true
author: i2m-ops
"""

RETURN = r"""
results:
  description: Each probe as given, with C(status) (-1 for no answer), C(ok) (status expected),
    C(attempts) and, for no answer, C(error) (the reason, without the request).
  type: list
  returned: always
"""


class _NoPostRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return super().redirect_request(req, fp, code, msg, headers, newurl) if req.get_method() in ("GET", "HEAD") else None


def multipart_body(upload):
    """(body, content type) of a multipart/form-data request carrying one file."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{upload['field']}\"; filename=\"{upload['filename']}\"\r\n"
            f"Content-Type: {upload['mime_type']}\r\n\r\n{upload['content']}\r\n--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


def send(opener, probe, token, upload, timeout):
    """One try: the status answered, or -1 and why there was no answer."""
    headers, body = {}, None
    if probe.get("auth"):
        headers["Authorization"] = f"Bearer {token}"
    if probe["method"] == "POST":
        body, headers["Content-Type"] = multipart_body(upload)
    request = urllib.request.Request(probe["url"], data=body, headers=headers, method=probe["method"])
    try:
        with opener.open(request, timeout=timeout) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (urllib.error.URLError, OSError) as error:
        return -1, str(getattr(error, "reason", error))
    except Exception as error:  # a malformed answer or URL (http.client, ValueError): the probe failed, not the module
        return -1, f"{type(error).__name__}: {error}"


def probe_until_expected(opener, probe, params):
    for attempt in range(1, params["retries"] + 2):
        status, error = send(opener, probe, params["bearer_token"], params["upload"], params["timeout"])
        if status in probe["expect"] or attempt > params["retries"]:
            return {**probe, "status": status, "ok": status in probe["expect"], "attempts": attempt, "error": error}
        time.sleep(params["delay"])


def main():
    module = AnsibleModule(
        argument_spec={
            "probes": {"type": "list", "elements": "dict", "required": True},
            "bearer_token": {"type": "str", "default": "", "no_log": True},
            "upload": {"type": "dict", "default": {"field": "files", "filename": "i2m-probe.png",
                                                   "content": "i2m-ops verification probe", "mime_type": "image/png"}},
            "timeout": {"type": "float", "default": 10},
            "retries": {"type": "int", "default": 0},
            "delay": {"type": "float", "default": 2},
            "validate_certs": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    context = ssl.create_default_context() if params["validate_certs"] else ssl._create_unverified_context()
    # No proxy: the probes go to the host's own containers, and the token must reach only them.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context),
                                         _NoPostRedirects())
    # Probes of one host at once: their waits for a slow or restarting service overlap.
    with ThreadPoolExecutor(max_workers=max(len(params["probes"]), 1)) as pool:
        results = list(pool.map(lambda probe: probe_until_expected(opener, probe, params), params["probes"]))
    module.exit_json(changed=False, results=results)


if __name__ == "__main__":
    main()
