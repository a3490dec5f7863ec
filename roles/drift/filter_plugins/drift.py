"""Filters of the drift role: each turns evidence into items {service, check, item, state, ok},
the same shape as the verify role's checks. Names and states only, never values."""

from datetime import datetime, timezone


def _item(service, check, item, state, ok):
    return {"service": service, "check": check, "item": item, "state": state, "ok": ok}


def drift_env_file_items(env_file_items):
    """The env file on disk against what the inventory renders now."""
    if not env_file_items:
        return [_item("-", "env file", "content", "as rendered", True)]
    return [_item("-", "env file", entry["item"], entry["state"], False) for entry in env_file_items]


def _config_hashes(hashes_text):
    return {service: config_hash.strip() for service, config_hash in
            (line.split(None, 1) for line in hashes_text.splitlines() if line.strip())}


def drift_config_hash_items(containers, hashes_text):
    """A container whose compose config hash differs from `compose config --hash` now was not
    recreated after its configuration (compose file or env file) changed."""
    now = _config_hashes(hashes_text)
    items = []
    for service, config_hash in sorted(now.items()):
        container = containers.get(service)
        if container is None:
            continue
        same = container["config_hash"] == config_hash
        items.append(_item(service, "config hash", "compose config",
                           "current" if same else "differs: the container predates the current configuration", same))
    return items


def _docker_time(text):
    """Docker's UTC timestamps carry nanoseconds; Python reads up to microseconds."""
    head, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{fraction[:6] or '0'}+00:00")


def drift_started_items(containers, env_changed_at, hashes_text):
    """A container started before the env file last changed may run with the values of before:
    it does when its configuration differs from compose's now, or when compose cannot say (v1).
    One whose configuration the change left alone (same config hash) is current."""
    changed = datetime.fromtimestamp(float(env_changed_at), tz=timezone.utc)
    now = _config_hashes(hashes_text)
    items = []
    for service, container in sorted(containers.items()):
        if _docker_time(container["started_at"]) >= changed:
            state, fresh = "yes", True
        elif now.get(service) == container["config_hash"]:
            state, fresh = "before the env file changed, which left its configuration alone", True
        else:
            state, fresh = "started before the env file last changed", False
        items.append(_item(service, "started after env file", "start time", state, fresh))
    return items


def drift_image_reference(name):
    """An image name as Docker lists it: `tag` with the tag made explicit (`latest` where the name
    has none), or `digest` for a name pinned by digest; Docker Hub's implicit prefixes removed.
    Compose names the image of a service built without `image:` `<project>-<service>`, untagged
    (https://docs.docker.com/reference/compose-file/build/#consistency-with-image). Returns
    ("tag" or "digest", normalised name)."""
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    if "@" in name:
        repository, _, digest = name.partition("@")
        if ":" in repository.rsplit("/", 1)[-1]:
            repository = repository.rsplit(":", 1)[0]
        return "digest", f"{repository}@{digest}"
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return "tag", name


def drift_image_items(containers, images):
    """The running container's image against the image its name (tag or digest) points to now.
    images: `docker image inspect` entries {RepoTags, RepoDigests, Id}."""
    ids = {}
    for image in images:
        for kind, names in (("tag", image.get("RepoTags") or []), ("digest", image.get("RepoDigests") or [])):
            for name in names:
                ids[(kind, drift_image_reference(name)[1])] = image["Id"]
    items = []
    for service, container in sorted(containers.items()):
        current = ids.get(drift_image_reference(container["image_tag"]))
        same = current == container["image_id"]
        state = "current" if same else ("its name no longer exists" if current is None else "its name points to a newer image")
        items.append(_item(service, "image", container["image_tag"], state, same))
    return items


class FilterModule:
    def filters(self):
        return {
            "drift_env_file_items": drift_env_file_items,
            "drift_config_hash_items": drift_config_hash_items,
            "drift_started_items": drift_started_items,
            "drift_image_items": drift_image_items,
        }
