#!/usr/bin/env python3
"""Checks rtu2mqtt's MQTT discovery against a real Home Assistant, by hand.

CI does not run this: it needs Home Assistant, which is Python and large. Run it with the
Python of a virtual environment that has Home Assistant (2025.4 is what it was written
against; its MQTT integration installs paho-mqtt itself on first start):

    ~/.pyenv/versions/3.13.0/bin/python -m venv /tmp/ha-venv
    /tmp/ha-venv/bin/pip install 'homeassistant==2025.4.*'
    cargo build
    /tmp/ha-venv/bin/python tests/homeassistant/check.py --rtu2mqtt target/debug/rtu2mqtt

It needs mosquitto, mosquitto_pub and mosquitto_sub on PATH. Everything runs on loopback:
a mosquitto on a free port, `rtu2mqtt sim` serving the example config's device on a
pseudo-terminal, `rtu2mqtt run` on it with `[homeassistant] discovery = true`, and Home
Assistant with a config directory of its own (a temporary one unless --config is given),
onboarded and given the MQTT integration through its REST API. Then, through the REST and
websocket APIs, it checks that:

- the entities appear, under one device per Modbus device plus the bridge device;
- number.set_value on the PWM moves it (the gateway's read-back on MQTT shows it);
- `offline` on the device's availability topic makes its entities unavailable, and on
  `bridge/state` all of them;
- deleting the device in Home Assistant clears its retained configs, and the gateway
  publishes them again when Home Assistant announces itself (`homeassistant/status`).

It prints what it saw and exits non-zero on the first thing that is not as expected.
"""

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

REPO = pathlib.Path(__file__).resolve().parents[2]
CLIENT_ID = "http://127.0.0.1/"
ENTITIES = {
    "sensor.rtu2mqtt_climate_temperature": "climate",
    "sensor.rtu2mqtt_climate_humidity": "climate",
    "number.rtu2mqtt_climate_pwm": "climate",
    "sensor.rtu2mqtt_climate_test": "climate",
    "binary_sensor.rtu2mqtt_bridge_connection_state": "rtu2mqtt bridge",
    "sensor.rtu2mqtt_bridge_line_utilisation": "rtu2mqtt bridge",
}
CLIMATE = [e for e, d in ENTITIES.items() if d == "climate"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fail(message):
    print(f"FAIL: {message}", flush=True)
    raise SystemExit(1)


async def until(what, check, timeout=60.0, every=0.5):
    """Waits until `check()` (a coroutine) returns something true; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            fail(f"{what}: not within {timeout:.0f} s (last: {result!r})")
        await asyncio.sleep(every)


class Rig:
    def __init__(self, args, workdir):
        self.args = args
        self.dir = workdir
        self.processes = []
        self.mqtt_port = free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"

    def spawn(self, name, argv, **kwargs):
        log = open(self.dir / f"{name}.log", "w")
        process = subprocess.Popen(
            argv, stdout=kwargs.pop("stdout", log), stderr=log, start_new_session=True, **kwargs
        )
        self.processes.append(process)
        return process

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)

    def mosquitto(self):
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\n")
        self.spawn("mosquitto", ["mosquitto", "-c", str(conf)])

    def pub(self, topic, payload, retain=False):
        argv = ["mosquitto_pub", "-p", str(self.mqtt_port), "-t", topic, "-m", payload]
        subprocess.run(argv + (["-r"] if retain else []), check=True)

    def retained(self, topic):
        """The retained payload of `topic` (empty when there is none)."""
        argv = ["mosquitto_sub", "-p", str(self.mqtt_port), "-t", topic, "-C", "1", "-W", "1"]
        out = subprocess.run(argv, capture_output=True, text=True)
        return out.stdout.strip()

    def gateway(self):
        example = (REPO / "configs" / "example.toml").read_text()
        sim_config = self.dir / "sim.toml"
        sim_config.write_text(example)
        sim = self.spawn("sim", [self.args.rtu2mqtt, "sim", "-c", str(sim_config)], stdout=subprocess.PIPE)
        pty = sim.stdout.readline().decode().strip()
        if not pty.startswith("/dev/"):
            fail(f"rtu2mqtt sim printed {pty!r}, not a terminal")
        config = (
            example.replace('port = "/dev/ttyUSB0"', f'port = "{pty}"')
            .replace("[mqtt]\n", f"[mqtt]\nport = {self.mqtt_port}\n")
            .replace("[mqtt]\n", '[mqtt]\nstats_interval = "5s"\n', 1)
            .replace("discovery = false", "discovery = true")
        )
        gateway_config = self.dir / "gateway.toml"
        gateway_config.write_text(config)
        self.spawn("gateway", [self.args.rtu2mqtt, "run", "-c", str(gateway_config)])
        print(f"gateway on {pty}, broker 127.0.0.1:{self.mqtt_port}", flush=True)

    def hass(self):
        config = self.hass_config = self.args.config or (self.dir / "hass")
        config.mkdir(parents=True, exist_ok=True)
        (config / "configuration.yaml").write_text(
            "homeassistant:\n  name: rtu2mqtt check\n  time_zone: UTC\n  unit_system: metric\n"
            "  latitude: 0\n  longitude: 0\n  elevation: 0\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.http_port}\n"
            "api:\nconfig:\nonboarding:\nwebsocket_api:\n"
        )
        self.spawn("hass", [self.args.hass, "-c", str(config)])
        print(f"Home Assistant {self.url}, config {config}", flush=True)


class Hass:
    def __init__(self, session, url):
        self.session = session
        self.url = url
        self.token = None

    def headers(self):
        return {"Authorization": f"Bearer {self.token}"}

    async def up(self):
        try:
            async with self.session.get(f"{self.url}/api/onboarding") as r:
                return r.status == 200 and await r.json()
        except aiohttp.ClientError:
            return None

    async def onboard(self):
        user = {
            "client_id": CLIENT_ID,
            "name": "Check",
            "username": "check",
            "password": "check-password",
            "language": "en",
        }
        async with self.session.post(f"{self.url}/api/onboarding/users", json=user) as r:
            if r.status != 200:
                fail(f"onboarding: {r.status} {await r.text()}")
            code = (await r.json())["auth_code"]
        form = {"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID}
        async with self.session.post(f"{self.url}/auth/token", data=form) as r:
            self.token = (await r.json())["access_token"]

    async def post(self, path, body):
        async with self.session.post(f"{self.url}{path}", json=body, headers=self.headers()) as r:
            text = await r.text()
            if r.status >= 300:
                fail(f"POST {path}: {r.status} {text}")
            return json.loads(text) if text else None

    async def add_mqtt(self, port):
        flow = await self.post("/api/config/config_entries/flow", {"handler": "mqtt"})
        while flow.get("type") == "form":
            print(f"  MQTT config flow step {flow['step_id']}", flush=True)
            flow = await self.post(
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {"broker": "127.0.0.1", "port": port},
            )
        if flow.get("type") != "create_entry":
            fail(f"MQTT config flow ended with {flow}")
        print(f"  MQTT integration added: {flow['title']}", flush=True)

    async def states(self):
        async with self.session.get(f"{self.url}/api/states", headers=self.headers()) as r:
            return {s["entity_id"]: s for s in await r.json()}

    async def ws(self, *commands):
        """Results of websocket commands (a type, or the whole command), in order."""
        async with self.session.ws_connect(f"{self.url}/api/websocket") as ws:
            await ws.receive_json()
            await ws.send_json({"type": "auth", "access_token": self.token})
            if (await ws.receive_json())["type"] != "auth_ok":
                fail("websocket auth")
            results = []
            for i, command in enumerate(commands, start=1):
                command = {"type": command} if isinstance(command, str) else command
                await ws.send_json({"id": i, **command})
                while True:
                    message = await ws.receive_json()
                    if message.get("id") == i:
                        break
                if not message.get("success"):
                    fail(f"websocket {command}: {message}")
                results.append(message["result"])
            return results


async def check(rig):
    async with aiohttp.ClientSession() as session:
        hass = Hass(session, rig.url)
        started = time.monotonic()
        await until("Home Assistant answering", hass.up, timeout=600, every=2)
        print(f"Home Assistant up after {time.monotonic() - started:.0f} s", flush=True)
        await hass.onboard()
        await hass.add_mqtt(rig.mqtt_port)
        rig.gateway()

        async def all_entities():
            states = await hass.states()
            return states if all(e in states for e in ENTITIES) else None

        async def answering():
            states = await hass.states()
            values = [states.get(e, {}).get("state") for e in CLIMATE]
            return states if all(v not in (None, "unknown", "unavailable") for v in values) else None

        async def utilisation():
            states = await hass.states()
            state = states["sensor.rtu2mqtt_bridge_line_utilisation"]["state"]
            return states if state.replace(".", "", 1).isdigit() else None

        await until("the discovered entities", all_entities)
        await until("values from the device", answering, timeout=30)
        # bridge/stats comes every stats_interval (5 s here).
        states = await until("the line utilisation", utilisation, timeout=30)
        print("\nentities and states:", flush=True)
        for entity_id in ENTITIES:
            state = states[entity_id]
            attributes = state["attributes"]
            unit = attributes.get("unit_of_measurement", "")
            more = {k: attributes[k] for k in ("device_class", "state_class", "min", "max", "step", "mode") if k in attributes}
            print(f"  {entity_id} = {state['state']} {unit} {more or ''}", flush=True)

        devices, entities = await hass.ws("config/device_registry/list", "config/entity_registry/list")
        by_id = {d["id"]: d for d in devices}
        print("\ndevices:", flush=True)
        for d in devices:
            if any(i[0] == "mqtt" for i in d["identifiers"]):
                via = by_id.get(d["via_device_id"], {}).get("name")
                print(
                    f"  {d['name']!r}: identifiers {d['identifiers']}, manufacturer "
                    f"{d['manufacturer']!r}, model {d['model']!r}, via {via!r}",
                    flush=True,
                )
        for e in entities:
            if e["entity_id"] in ENTITIES:
                device = by_id[e["device_id"]]["name"] if e["device_id"] else None
                if device != ENTITIES[e["entity_id"]]:
                    fail(f"{e['entity_id']} is on device {device!r}, not {ENTITIES[e['entity_id']]!r}")
        print("every entity is on its device", flush=True)

        await hass.post(
            "/api/services/number/set_value",
            {"entity_id": "number.rtu2mqtt_climate_pwm", "value": 512},
        )

        async def pwm_moved():
            states = await hass.states()
            read_back = rig.retained("rtu2mqtt/climate/pwm")
            return (read_back, states["number.rtu2mqtt_climate_pwm"]["state"]) if read_back == "512" else None

        read_back, state = await until("the PWM at 512", pwm_moved, timeout=20)
        print(f"\nnumber.set_value 512: the gateway read back {read_back}, HA shows {state}", flush=True)

        rig.pub("rtu2mqtt/climate/availability", "offline", retain=True)

        async def climate_unavailable():
            states = await hass.states()
            return states if all(states[e]["state"] == "unavailable" for e in CLIMATE) else None

        states = await until("the device's entities unavailable", climate_unavailable, timeout=20)
        print("\nafter offline on rtu2mqtt/climate/availability:", flush=True)
        for entity_id in ENTITIES:
            print(f"  {entity_id} = {states[entity_id]['state']}", flush=True)

        rig.pub("rtu2mqtt/climate/availability", "online", retain=True)
        await until("values back", answering, timeout=20)

        # Deleting the device in Home Assistant clears its retained configs; the gateway
        # publishes them again when Home Assistant next says `online` (or it next connects).
        climate = next(d for d in devices if d["name"] == "climate")
        await hass.ws(
            {
                "type": "config/device_registry/remove_config_entry",
                "device_id": climate["id"],
                "config_entry_id": climate["config_entries"][0],
            }
        )

        async def climate_gone():
            states = await hass.states()
            cleared = rig.retained("homeassistant/sensor/rtu2mqtt/climate_temperature/config") == ""
            return cleared and not any(e in states for e in CLIMATE)

        await until("the device deleted and its configs cleared", climate_gone, timeout=20)
        print("\ndeleting device 'climate' in HA: its entities are gone, its retained configs cleared", flush=True)
        rig.pub("homeassistant/status", "online")
        await until("the device back after HA's online", answering, timeout=20)
        print("after homeassistant/status online: the gateway published them again, entities back", flush=True)
        rig.pub("rtu2mqtt/bridge/state", "offline", retain=True)

        async def bridge_offline():
            states = await hass.states()
            connection = states["binary_sensor.rtu2mqtt_bridge_connection_state"]["state"]
            gone = all(states[e]["state"] == "unavailable" for e in CLIMATE)
            return states if gone and connection == "off" else None

        states = await until("every entity unavailable with the bridge offline", bridge_offline, timeout=20)
        print("\nafter offline on rtu2mqtt/bridge/state:", flush=True)
        for entity_id in ENTITIES:
            print(f"  {entity_id} = {states[entity_id]['state']}", flush=True)
        log = (rig.hass_config / "home-assistant.log").read_text()
        complaints = [l for l in log.splitlines() if "components.mqtt" in l and (" WARNING " in l or " ERROR " in l)]
        if complaints:
            fail("Home Assistant's MQTT integration complained:\n" + "\n".join(complaints))
        print("\nno warning or error from Home Assistant's MQTT integration in its log", flush=True)
        print("\nOK", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtu2mqtt", default=str(REPO / "target" / "debug" / "rtu2mqtt"))
    parser.add_argument("--hass", default=str(pathlib.Path(sys.executable).with_name("hass")))
    parser.add_argument("--config", type=pathlib.Path, help="Home Assistant's config directory")
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = parser.parse_args()
    for tool in ("mosquitto", "mosquitto_pub", "mosquitto_sub"):
        if not shutil.which(tool):
            fail(f"{tool} is not on PATH")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="rtu2mqtt-ha-"))
    rig = Rig(args, workdir)
    passed = False
    try:
        rig.mosquitto()
        rig.hass()
        asyncio.run(check(rig))
        passed = True
    finally:
        rig.stop()
        if passed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs in {workdir}", flush=True)


if __name__ == "__main__":
    main()
