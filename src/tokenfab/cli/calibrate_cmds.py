"""`tokenfab calibrate` (measure a device, fit its curves) and `tokenfab validate` (predicted vs measured)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from tokenfab.cli.main import app, emit_json, err, out
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.table_io import HTML_SUFFIXES, TABLE_SUFFIXES, YAML_SUFFIXES, check_output_path

Opt = typer.Option


@app.command()
def calibrate(
    device: Annotated[str | None, Opt(help="Measure this device: cpu, cuda or cuda:N (needs torch).")] = None,
    out_path: Annotated[str | None, Opt("--out", help="Where to save the measurement file (.csv or .parquet).")] = None,
    measurements: Annotated[str | None, Opt(help="Fit from an existing measurement file instead of measuring.")] = None,
    hardware: Annotated[str | None, Opt(help="Catalog chip the device is (default: cpu-host, or the GPU's name).")] = None,
    profile_out: Annotated[str | None, Opt(help="Write the calibrated chip spec (YAML) here.")] = None,
    name: Annotated[str | None, Opt(help="Name of the calibrated chip (default: <hardware>-calibrated).")] = None,
    measured_peaks: Annotated[bool | None, Opt(help="Replace vendor peaks by the best measured rates (default: on for cpu).")] = None,
    quick: Annotated[bool, Opt(help="A run of well under a minute.")] = False,
    budget_s: Annotated[float, Opt(help="Bound on the total measuring time, s.")] = 600.0,
    force: Annotated[bool, Opt(help="Fit a file's measurements of another device as --hardware anyway.")] = False,
) -> None:
    """Measure a device with microbenchmarks and/or fit a calibrated chip profile from measurements."""
    import pandas as pd

    from tokenfab.calibrate.calibrated_chip import calibrate_chip, write_chip_yaml
    from tokenfab.calibrate.suite import catalog_name_for
    from tokenfab.calibrate.measurements import read_measurements, write_measurements
    from tokenfab.hardware.catalog import load_chip

    if (device is None) == (measurements is None):
        raise InvalidInputError("give --device to measure or --measurements to fit from (one of them)")
    if not budget_s > 0 or budget_s == float("inf"):
        raise InvalidInputError(f"--budget-s must be a finite number > 0, got {budget_s}")
    if out_path:
        check_output_path(out_path, TABLE_SUFFIXES, "measurement")
    if profile_out:
        check_output_path(profile_out, YAML_SUFFIXES, "chip profile")
    if measurements is not None and not profile_out:
        raise InvalidInputError("fitting from --measurements needs --profile-out PATH.yaml for the calibrated chip")
    if device is not None:
        if out_path is None:
            raise InvalidInputError("--device needs --out PATH for the measurement file")
        from tokenfab.calibrate.suite import SuiteConfig, _torch, device_identity, run_suite

        dev_name = device_identity(_torch(), device)[0]
        hardware = hardware or ("cpu-host" if device == "cpu" else catalog_name_for(dev_name))
        if hardware is None:
            raise InvalidInputError(f"cannot tell which catalog chip '{dev_name}' is; pass --hardware")
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"measuring {dev_name}", total=None)
            cfg = SuiteConfig(device=device, quick=quick, budget_s=budget_s if not quick else min(budget_s, 45.0),
                              progress=lambda section, n, _t: bar.update(task, description=f"{section}: {n} kernels"))
            rows = run_suite(cfg, hardware)
        frame = pd.DataFrame(rows)
        write_measurements(frame, out_path)
        err.print(f"wrote {len(frame)} measurements of {dev_name} to {out_path}")
        frame = read_measurements(out_path)
        measured_peaks = (device == "cpu") if measured_peaks is None else measured_peaks
    else:
        frame = read_measurements(measurements)
        if hardware is None:
            devices = sorted(frame["device"].dropna().unique())
            if len(devices) != 1:
                raise InvalidInputError(f"the file measures {devices}; pick one with --hardware")
            hardware = devices[0]
        measured = sorted(frame["device"].dropna().unique())
        if hardware in measured:
            frame = frame[frame["device"] == hardware]
        elif not force:
            raise InvalidInputError(f"the file measures {', '.join(measured)}, not {hardware}; "
                                    f"pick one with --hardware, or --force to fit them as {hardware}")
        measured_peaks = bool(measured_peaks)
    if profile_out:
        data = calibrate_chip(frame, load_chip(hardware), name=name, use_measured_peaks=measured_peaks)
        write_chip_yaml(data, profile_out)
        quality = {f"{t}.{k}": v["fit"]["mape"] for t in ("gemm", "attention_prefill", "attention_decode")
                   for k, v in data["efficiency_profile"][t].items()}
        t = Table(title=f"fitted {data['name']} -> {profile_out}")
        t.add_column("curve")
        t.add_column("fit MAPE (own residuals)")
        for key, mape in quality.items():
            t.add_row(key, f"{mape:.1%}")
        out.print(t)


@app.command()
def validate(
    hardware: Annotated[str, Opt("--hardware", "-H", help="Chip name or (calibrated) chip YAML to predict with.")],
    measurements: Annotated[str, Opt(help="Measurement file (tokenfab calibrate output, or shared/calibration CSV).")],
    report: Annotated[str | None, Opt(help="Write an HTML report with plots here.")] = None,
    threshold: Annotated[float, Opt(help="Flag rows missing by more than this fraction.")] = 0.2,
    device: Annotated[str | None, Opt(help="Which device's rows to use when the file has several.")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print one JSON object.")] = False,
    force: Annotated[bool, Opt(help="Validate a file's measurements of another device against --hardware anyway.")] = False,
) -> None:
    """Compare a chip's predictions with measurements: per-group MAPE, worst cases, flagged ops."""
    from tokenfab.calibrate.measurements import read_measurements
    from tokenfab.calibrate.validate import group_stats, predict_measurements, worst_rows
    from tokenfab.cost.chip_cost import chip_cost
    from tokenfab.hardware.catalog import load_chip

    if not 0 < threshold < float("inf"):
        raise InvalidInputError(f"--threshold must be a finite fraction > 0, got {threshold}")
    if report:
        check_output_path(report, HTML_SUFFIXES, "report")
    frame = read_measurements(measurements)
    if device:
        if device not in set(frame["device"]):
            raise UnknownNameError("device in the file", device, frame["device"].dropna().unique())
        frame = frame[frame["device"] == device]
    elif frame["device"].nunique() > 1:
        raise InvalidInputError(f"the file measures {sorted(frame['device'].unique())}; pick one with --device")
    if frame.empty:
        raise InvalidInputError("no measurements left to validate")
    cc = chip_cost(load_chip(hardware))
    _same_chip(cc.chip, str(frame["device"].iloc[0]), force)
    pred = predict_measurements(frame, lambda _d: cc)
    stats = [s.as_dict() for s in group_stats(pred, ["group"])]
    flagged = pred[pred["error_frac"].abs() > threshold]
    if report:
        from tokenfab.report.validation_report import write_validation_report

        err.print(f"wrote {write_validation_report(pred, cc.chip.name, report, threshold)}")
    if as_json:
        worst = worst_rows(pred, 10)
        emit_json({"hardware": cc.chip.name, "rows": int(pred["error_frac"].notna().sum()), "groups": stats,
                   "flagged": int(len(flagged)), "threshold": threshold,
                   "worst": worst[["op", "time_s", "predicted_s", "error_frac"]].to_dict(orient="records")})
        return
    t = Table(title=f"{cc.chip.name}: predicted vs measured ({len(flagged)} rows off by > {threshold:.0%})")
    for col in ("group", "rows", "MAPE", "median", "p90", "max", "bias"):
        t.add_column(col)
    for s in stats:
        t.add_row(s["group"], str(s["num_rows"]), f"{s['mape']:.1%}", f"{s['median_ape']:.1%}", f"{s['p90_ape']:.1%}",
                  f"{s['max_ape']:.0%}", f"{s['bias']:+.1%}")
    out.print(t)


def _same_chip(chip, measured_device: str, force: bool) -> None:
    """Measurements of one chip judged against another's model say nothing about either: refuse unless forced.
    A calibrated chip (named '<device>-...', or inheriting the device's curves) counts as the device."""
    if force or chip.name == measured_device or chip.name.startswith(f"{measured_device}-") \
            or chip.efficiency_reference == measured_device:
        return
    raise InvalidInputError(f"the measurements are of {measured_device}, not {chip.name}; use --hardware "
                            f"{measured_device}, or --force to compare them with {chip.name} anyway")
