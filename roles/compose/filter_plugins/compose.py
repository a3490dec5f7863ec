"""Filters of the compose role: readiness of a stack from `docker ps --format '{{json .}}'`."""


def _labels(entry):
    pairs = (item.split("=", 1) for item in entry.get("Labels", "").split(",") if "=" in item)
    return dict(pairs)


def compose_not_ready(ps_entries, services):
    """Each service without a running container whose healthcheck (if any) passes, with why."""
    states = {}
    for entry in ps_entries:
        labels = _labels(entry)
        if labels.get("com.docker.compose.oneoff") == "True":
            continue
        status = entry.get("Status", "")
        if entry.get("State") != "running":
            states[labels.get("com.docker.compose.service")] = entry.get("State", "unknown")
        elif "(health: starting)" in status:
            states[labels.get("com.docker.compose.service")] = "health: starting"
        elif "(unhealthy)" in status:
            states[labels.get("com.docker.compose.service")] = "unhealthy"
        else:
            states[labels.get("com.docker.compose.service")] = "ready"
    return [f"{service}: {states.get(service, 'no container')}" for service in services if states.get(service) != "ready"]


def compose_rollback_images(inspect_lines, services):
    """`docker inspect` lines "service image-id tag" of the rebuilt services, as
    {service: {id, tag, rollback_tag}}; the rollback tag keeps the repository, tag i2m-rollback."""
    images = {}
    for line in inspect_lines:
        service, image_id, tag = line.split(" ", 2)
        if service in services:
            repository = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
            images[service] = {"id": image_id, "tag": tag, "rollback_tag": f"{repository}:i2m-rollback"}
    return images


class FilterModule:
    def filters(self):
        return {"compose_not_ready": compose_not_ready, "compose_rollback_images": compose_rollback_images}
