"""Canary secrets: values unique to a test run, searched for in everything a run prints."""

import base64
import urllib.parse


def canary_secrets(run_id: str) -> dict:
    """Secrets unique to one test run. API_KEY and POSTGRES_PASSWORD carry every character that
    quoting can break; the values production interpolates into commands (REDIS_PASSWORD,
    FLOWER_BASIC_AUTH) hold none."""
    redis_password = f"i2mCanaryRedis{run_id}"
    redis_url = f"redis://:{redis_password}@redis:6379/0"
    postgres_password = f"i2mCanaryPg{run_id} #$'\"x"
    return {
        "POSTGRES_PASSWORD": postgres_password,
        "DATABASE_URL": f"postgresql://image2model:{urllib.parse.quote(postgres_password, safe='')}@postgres:5432/image2model",
        # Interpolated into flower's command (as in production): no character a shell word breaks on
        "FLOWER_BASIC_AUTH": f"admin:i2mCanaryFlower{run_id}",
        "API_KEY": f"i2mCanaryApi{run_id} $HOME #not-a-comment \"dq\" 'sq' back\\slash ${{X}} $$ end",
        "ADMIN_API_KEY": f"i2mCanaryAdmin{run_id}#'$",
        "SECRET_KEY": f"i2mCanarySecret{run_id}",
        "FAL_API_KEY": f"i2mCanaryFal{run_id}",
        "REDIS_PASSWORD": redis_password,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
    }


def encodings(value: str) -> list:
    raw = value.encode()
    return [value, base64.b64encode(raw).decode(), urllib.parse.quote(value), urllib.parse.quote_plus(value)]


def canary_hits(text: str, canaries: dict) -> list:
    """Names (never values) of the canaries found in a text, raw, base64- or URL-encoded."""
    return sorted(key for key, value in canaries.items() if any(form in text for form in encodings(value)))
