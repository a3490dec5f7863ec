"""Filters of the compose role: readiness of containers from `docker ps` (id, service, oneoff,
state and status as JSON: compose_ps_format), the rolled services' obstacles, and the images
kept for a rollback."""


def _readiness(entry):
    if entry["state"] != "running":
        return entry["state"] or "unknown"
    if "(health: starting)" in entry["status"]:
        return "health: starting"
    if "(unhealthy)" in entry["status"]:
        return "unhealthy"
    return "ready"


def compose_not_ready(ps_entries, services):
    """Each service without a running container whose healthcheck (if any) passes, with why."""
    states = {entry["service"]: _readiness(entry) for entry in ps_entries if entry["oneoff"] != "True"}
    return [f"{service}: {states.get(service, 'no container')}" for service in services if states.get(service) != "ready"]


def compose_new_containers_ready(ps_entries, old_ids):
    """One service's containers: are as many new ones as old ones (at least one) running, and
    healthy where they have a healthcheck?"""
    new = [entry for entry in ps_entries if entry["id"] not in old_ids]
    return len(new) >= max(len(old_ids), 1) and all(_readiness(entry) == "ready" for entry in new)


def compose_rolling_obstacles(config, services):
    """What keeps each rolled service from running twice side by side, from `config --format json`."""
    obstacles = []
    for service in services:
        definition = config.get("services", {}).get(service)
        if definition is None:
            obstacles.append(f"{service} is not a service of the compose files")
            continue
        if definition.get("container_name"):
            obstacles.append(f"{service} has a fixed container_name ({definition['container_name']})")
        published = [str(port.get("published")) for port in definition.get("ports", []) if port.get("published")]
        if published:
            obstacles.append(f"{service} publishes host ports ({', '.join(published)})")
    return obstacles


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
        return {
            "compose_not_ready": compose_not_ready,
            "compose_new_containers_ready": compose_new_containers_ready,
            "compose_rolling_obstacles": compose_rolling_obstacles,
            "compose_rollback_images": compose_rollback_images,
        }
