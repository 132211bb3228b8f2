"""Resource names, derived once from the settings (a prefix, no random suffixes: plans are stable, names predictable).

The stacks name their resources with these, and the local cloud and the outputs contract for environments without
a Terraform state derive the same names from the same function.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from stacks.config import Settings

PROXY_PORT = 443


@dataclass(frozen=True)
class Names:
    secret_id: str
    write_secret_id: str
    trainer_account_id: str
    submitter_account_id: str
    publisher_account_id: str
    staging_bucket: str
    artifacts_bucket: str
    mirror_bucket: str
    logs_bucket: str
    rotation_topic: str
    write_rotation_topic: str
    network: str
    subnet: str
    proxy_only_subnet: str
    network_attachment: str
    proxy_subnet: str
    gateway: str
    gateway_policy: str
    url_list: str
    content_url_list: str
    ca_pool: str
    ca: str
    tls_inspection_policy: str
    firewall_policy: str
    perimeter: str
    proxy_address: str

    def email(self, account_id: str, project_id: str) -> str:
        return f"{account_id}@{project_id}.iam.gserviceaccount.com"


def subnet_halves(subnet) -> tuple:
    """subnet_cidr split in two: the PSC interface's subnet (Google recommends one used by the network attachment
    only) and the Secure Web Proxy's."""
    low, high = subnet.subnets(prefixlen_diff=1)
    return low, high


def names_for(settings: Settings, team: str | None = None) -> Names:
    """The environment's names; with `team`, that team's own resources (secrets, identities, buckets, network
    attachment and subnet, rotation topics) are named `<prefix>-<team>-...`, the shared ones (network, proxy, CA,
    firewall policy, perimeter, logs bucket) stay the environment's."""
    shared = _names(settings, settings.prefix)
    if team is None:
        return shared
    own = _names(settings, f"{settings.prefix}-{team}")
    keep = {"logs_bucket", "network", "proxy_only_subnet", "proxy_subnet", "gateway", "gateway_policy", "url_list",
            "content_url_list", "ca_pool", "ca", "tls_inspection_policy", "firewall_policy", "perimeter",
            "proxy_address"}
    from dataclasses import replace
    return replace(own, **{k: getattr(shared, k) for k in keep})


def _names(settings: Settings, p: str) -> Names:
    bucket = f"{settings.project_id}-{p}"
    subnet = ipaddress.ip_network(settings.subnet_cidr)
    return Names(
        secret_id=f"{p}-hf-token",
        write_secret_id=f"{p}-hf-write-token",
        trainer_account_id=f"{p}-trainer",
        submitter_account_id=f"{p}-submitter",
        publisher_account_id=f"{p}-publisher",
        staging_bucket=f"{bucket}-staging",
        artifacts_bucket=f"{bucket}-artifacts",
        mirror_bucket=f"{bucket}-mirror",
        logs_bucket=f"{bucket}-logs",
        rotation_topic=f"{p}-hf-token-rotation",
        write_rotation_topic=f"{p}-hf-write-token-rotation",
        network=f"{p}-vpc",
        subnet=f"{p}-jobs",
        proxy_only_subnet=f"{p}-proxy-only",
        network_attachment=f"{p}-vertex-psci",
        proxy_subnet=f"{p}-proxy",
        gateway=f"{p}-hf-proxy",
        gateway_policy=f"{p}-hf-only",
        url_list=f"{p}-hf-hosts",
        content_url_list=f"{p}-hf-content-hosts",
        ca_pool=f"{p}-egress-inspection",
        ca=f"{p}-egress-inspection-ca",
        tls_inspection_policy=f"{p}-hf-inspection",
        firewall_policy=f"{p}-egress",
        perimeter=f"{p.replace('-', '_')}_hfgate",
        # A fixed address in the proxy's half of subnet_cidr, so the proxy URL is known before apply.
        proxy_address=str(subnet_halves(subnet)[1].network_address + 10),
    )
