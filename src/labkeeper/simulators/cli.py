"""`labkeeper simulate ...`: run the built-in SSH device and Polatis switch simulators."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Run the built-in simulators (SSH devices, Polatis NETCONF switch) on 127.0.0.1."
)


@app.command("devices")
def devices(
    count: int = typer.Option(1, min=1, help="How many simulated devices to start."),
    platform: str = typer.Option("cisco_ios", help="Platform profile the devices behave like."),
    port_base: int = typer.Option(10022, help="First TCP port; device i listens on port_base + i."),
    username: str = typer.Option("admin", help="Login accepted by the devices."),
    password: str = typer.Option("admin", help="Password accepted by the devices."),
    latency_ms: float = typer.Option(0.0, help="Added delay per command, in milliseconds."),
    processes: int = typer.Option(1, min=1, help="Shard the devices over this many processes."),
) -> None:
    """Run simulated SSH devices until interrupted."""
    from labkeeper.simulators.devices import serve_devices

    serve_devices(
        count=count,
        platform=platform,
        port_base=port_base,
        username=username,
        password=password,
        latency_ms=latency_ms,
        processes=processes,
    )


@app.command("polatis")
def polatis(
    port: int = typer.Option(8830, help="TCP port of the NETCONF-over-SSH server."),
    ports: int = typer.Option(64, min=2, help="Number of switch ports."),
    username: str = typer.Option("admin", help="Login accepted by the switch."),
    password: str = typer.Option("admin", help="Password accepted by the switch."),
) -> None:
    """Run a simulated Polatis optical switch until interrupted."""
    from labkeeper.simulators.polatis import serve_polatis

    serve_polatis(port=port, ports=ports, username=username, password=password)
