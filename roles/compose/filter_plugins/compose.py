"""Filters of the compose role: the rolled services' obstacles, and the images kept for a
rollback. (Readiness is the stack_info role's compose_stack_info module's: it waits.)"""


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
            "compose_rolling_obstacles": compose_rolling_obstacles,
            "compose_rollback_images": compose_rollback_images,
        }
