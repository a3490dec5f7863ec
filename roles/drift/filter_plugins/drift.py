"""Filters of the drift role: each turns evidence into items {service, check, item, state, ok},
the same shape as the verify role's checks. Names and states only, never values."""

from datetime import datetime, timezone


def _item(service, check, item, state, ok):
    return {"service": service, "check": check, "item": item, "state": state, "ok": ok}


def drift_env_file_items(on_disk, mode):
    """The env file on disk against what the inventory renders now, from compose_stack_info's
    env_file state: each key whose line differs (names only: missing from the file, not in the
    inventory, set twice, differs), "differs from its rendering" where the bytes do but no key
    does (line endings, comments, stray lines), and its mode against `mode`."""
    if not on_disk["exists"]:
        return [_item("-", "env file", "file", "missing on the host", False)]
    items = [_item("-", "env file", entry["item"], entry["state"], False) for entry in on_disk["keys"]]
    if not items and not on_disk["same_bytes"]:
        items.append(_item("-", "env file", "content", "the file on the host differs from the inventory's rendering "
                           "(line endings, comments or stray lines)", False))
    if on_disk["mode"] != mode:
        items.append(_item("-", "env file", "mode", f"mode {on_disk['mode']} on the host, not {mode}", False))
    return items or [_item("-", "env file", "content", "as rendered", True)]


def drift_config_hash_items(containers, hashes):
    """A container whose compose config hash differs from `compose config --hash` now
    ({service: hash}) was not recreated after its configuration (compose file or env file) changed."""
    items = []
    for service, config_hash in sorted(hashes.items()):
        container = containers.get(service)
        if container is None:
            continue
        same = container["config_hash"] == config_hash
        items.append(_item(service, "config hash", "compose config",
                           "current" if same else "differs: the container was created from another configuration than the "
                           "compose files and the env file give now", same))
    return items


def _docker_time(text):
    """Docker's UTC timestamps carry nanoseconds; Python reads up to microseconds."""
    head, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{fraction[:6] or '0'}+00:00")


def drift_started_items(containers, env_changed_at, hashes):
    """A container started before the env file last changed (env_changed_at: seconds since the
    epoch) may run with the values of before: it does when its configuration differs from
    compose's now ({service: hash}), or when compose cannot say (v1, no hashes). One whose
    configuration the change left alone (same config hash) is current."""
    changed = datetime.fromtimestamp(float(env_changed_at), tz=timezone.utc)
    items = []
    for service, container in sorted(containers.items()):
        if _docker_time(container["started_at"]) >= changed:
            state, fresh = "yes", True
        elif hashes.get(service) == container["config_hash"]:
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
        current = ids.get(drift_image_reference(container["image_name"]))
        same = current == container["image_id"]
        state = "current" if same else ("its name no longer exists" if current is None else "its name points to a newer image")
        items.append(_item(service, "image", container["image_name"], state, same))
    return items


class FilterModule:
    def filters(self):
        return {
            "drift_env_file_items": drift_env_file_items,
            "drift_config_hash_items": drift_config_hash_items,
            "drift_started_items": drift_started_items,
            "drift_image_items": drift_image_items,
        }
