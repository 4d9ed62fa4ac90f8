# ruff: noqa: E501  (an HTML page: its lines are the page's, not Python's)
"""The live dashboard: one self-contained page (inline CSS and JS, no CDN: devices may be offline).

It polls ``/api/status`` every 2 s and reloads ``/api/frame.jpg`` (the last frame with its boxes
and, when SAM2 segmented its item, the mask). :class:`LiveView` holds what the page shows: it is
a pipeline sink (frames and masks arrive in the messages) and a listener of the recorder (recent
deposits). The frame is drawn when the page asks for it, on the HTTP thread, never on the
pipeline's.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from rvm_edge.messages import Deposit, ItemResult, MaskGeometry

if TYPE_CHECKING:
    from rvm_edge.service.recorder import Recorded

MASK_BGR = (30, 160, 230)  # orange: apart from the boxes' green and red
MASK_ALPHA = 0.45  # the item stays visible under its mask


def draw_mask(img: np.ndarray, mask: np.ndarray) -> None:
    """A translucent fill and the outline of ``mask`` (boolean, or 0/255 as in the mask PNGs) on
    ``img`` in place; a mask of another size (not SAM2's: it returns the frame's) is scaled to it."""
    m = mask.astype(np.uint8, copy=False)
    h, w = img.shape[:2]
    if m.shape != (h, w):
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
    x, y, bw, bh = cv2.boundingRect(m)  # blend the item's region only, not the whole frame
    if bw == 0 or bh == 0:
        return
    roi = img[y : y + bh, x : x + bw]
    inside = m[y : y + bh, x : x + bw] > 0
    roi[inside] = (roi[inside] * (1 - MASK_ALPHA) + np.array(MASK_BGR) * MASK_ALPHA).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(img, contours, -1, MASK_BGR, 2)


def draw_axis(img: np.ndarray, g: MaskGeometry) -> None:
    """The mask's centroid and major axis, when only its geometry is known."""
    cx, cy = g.centroid
    half = 0.5 * (g.area_px**0.5)
    dx, dy = half * np.cos(np.radians(g.orientation_deg)), half * np.sin(np.radians(g.orientation_deg))
    cv2.circle(img, (int(cx), int(cy)), 4, MASK_BGR, -1)
    cv2.line(img, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), MASK_BGR, 2)


def annotate(
    image: np.ndarray,
    result: Any,
    mask: tuple[int, np.ndarray | MaskGeometry] | None,
    copy: bool = True,
) -> bytes | None:
    """The frame as JPEG with its boxes (green: the accepted item, red: the rest) and, when SAM2
    segmented it, the mask: filled and outlined from its pixels, or only its centroid and major
    axis from its geometry. A mask of another frame is not drawn: it would not fit this one.
    ``copy=False`` draws on ``image`` itself (the caller's own copy)."""
    img = image.copy() if copy else image
    own = mask is not None and mask[0] == result.frame_index
    if own and isinstance(mask[1], np.ndarray):  # under the boxes, so they stay readable
        draw_mask(img, mask[1])
    for d in result.detections.items:
        x1, y1, x2, y2 = (int(v) for v in d.box)
        accepted = result.decision.item == d and result.decision.accepted
        color = (60, 180, 60) if accepted else (60, 60, 220)
        cv2.rectangle(img, (x1, y1), (x2, y2), color, 2)
        label = f"{d.class_name} {d.confidence:.2f}"
        cv2.putText(img, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1)
    if own and isinstance(mask[1], MaskGeometry):
        draw_axis(img, mask[1])
    ok, buf = cv2.imencode(".jpg", img)
    return buf.tobytes() if ok else None


class LiveView:
    """The dashboard's state: the last frame with something in view (a copy in one reused buffer:
    the pipeline's frame buffers go back to the camera), the newest segmented item's mask, and the
    recent deposits. Only the newest of each is kept, so memory stays flat."""

    def __init__(self, recent: int = 30) -> None:
        self._lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._result: ItemResult | None = None
        # (frame index, the mask's pixels, or its geometry when the pixels are not known)
        self._mask: tuple[int, np.ndarray | MaskGeometry] | None = None
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent)

    def _show(self, result: ItemResult) -> None:
        if result.frame is None or result.frame.released:
            return
        image = result.frame.image
        with self._lock:
            if self._image is None or self._image.shape != image.shape:
                self._image = image.copy()
            else:
                np.copyto(self._image, image)
            self._result = result

    # -- pipeline sink ----------------------------------------------------------------------
    def on_result(self, result: ItemResult) -> None:
        if result.detections.items or self._result is None:
            self._show(result)

    def on_deposit(self, deposit: Deposit) -> None:
        """A mask arrives after newer frames were decided (SAM2 is the slow stage), and it is only
        drawn on its own frame: show that frame again, with its mask."""
        seg = deposit.segmentation
        if seg is None:
            return
        with self._lock:
            self._mask = (deposit.result.frame_index, seg.mask if seg.mask is not None else seg.geometry)
        self._show(deposit.result)

    # -- recorder listener ------------------------------------------------------------------
    def recorded(self, event: Recorded) -> None:
        r = event.deposit.result
        d = r.decision
        self._recent.appendleft(
            {
                "deposit_id": event.deposit_id,
                "time": event.timestamp,
                "decision": d.verdict.value,
                "reason": d.reason,
                "material": d.material,
                "e2e_ms": round(r.timings_ms.get("e2e_ms", 0.0), 1),
                "offline": event.offline,
            }
        )

    # -- read by the HTTP server ------------------------------------------------------------
    def recent(self) -> list[dict[str, Any]]:
        return list(self._recent)

    def last_mask(self) -> tuple[int, np.ndarray | MaskGeometry] | None:
        with self._lock:
            return self._mask

    def frame_jpeg(self) -> bytes | None:
        """The last frame with its boxes and, when SAM2 segmented it, its mask; None before any."""
        with self._lock:
            if self._image is None or self._result is None:
                return None
            image, result, mask = self._image.copy(), self._result, self._mask
        return annotate(image, result, mask, copy=False)


DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rvm-edge</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#1d3557;color:#fff;padding:.6em 1em;display:flex;gap:2em;align-items:baseline}
main{display:grid;grid-template-columns:minmax(320px,1fr) minmax(320px,1fr);gap:1em;padding:1em}
section{background:#fff;border-radius:6px;padding:.8em;box-shadow:0 1px 2px #0002}
h2{font-size:1em;margin:.2em 0 .6em}
table{border-collapse:collapse;width:100%;font-size:.85em}td,th{padding:.2em .4em;border-bottom:1px solid #eee;text-align:left}
.ok{color:#2a9d8f}.bad{color:#e63946}.warn{color:#e9a03b}
img{max-width:100%;background:#ddd}canvas{width:100%;height:140px}
dl{display:grid;grid-template-columns:auto 1fr;gap:.2em 1em;margin:0;font-size:.9em}dt{color:#666}
</style></head>
<body>
<header><strong>rvm-edge</strong><span id="device"></span><span id="ready"></span><span id="version"></span></header>
<main>
<section><h2>Last frame</h2><img id="frame" alt="last frame with boxes and mask"></section>
<section><h2>Recent decisions</h2><table><thead><tr><th>time</th><th>decision</th><th>reason</th><th>ms</th></tr></thead><tbody id="decisions"></tbody></table></section>
<section><h2>Latency (e2e ms, p50 / p95) and throughput (frames/s)</h2><canvas id="chart" width="600" height="140"></canvas></section>
<section><h2>Outbox and platform link</h2><dl id="outbox"></dl></section>
<section><h2>Readiness checks</h2><dl id="checks"></dl></section>
</main>
<script>
"use strict";
const hist = [];
function esc(s){return String(s??"").replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));}
function dl(el, obj){el.innerHTML=Object.entries(obj).map(([k,v])=>`<dt>${esc(k)}</dt><dd>${esc(typeof v==="object"?JSON.stringify(v):v)}</dd>`).join("");}
function draw(){
  const c=document.getElementById("chart"),g=c.getContext("2d");g.clearRect(0,0,c.width,c.height);
  if(hist.length<2)return;
  const maxMs=Math.max(1,...hist.map(h=>h.p95||0)),maxFps=Math.max(1,...hist.map(h=>h.fps||0));
  const x=i=>i*(c.width/(hist.length-1));
  for(const [key,color,max] of [["p50","#1d3557",maxMs],["p95","#e63946",maxMs],["fps","#2a9d8f",maxFps]]){
    g.strokeStyle=color;g.beginPath();
    hist.forEach((h,i)=>{const y=c.height-5-(h[key]||0)/max*(c.height-10);i?g.lineTo(x(i),y):g.moveTo(x(i),y);});
    g.stroke();
  }
  g.fillStyle="#222";g.fillText(`p95 max ${maxMs.toFixed(1)} ms, ${maxFps.toFixed(1)} fps max`,5,12);
}
let lastFrames=null,lastT=null;
async function tick(){
  try{
    const r=await fetch("/api/status",{credentials:"same-origin"});
    if(r.status===401){location.href="/";return;}
    const s=await r.json();
    document.getElementById("device").textContent=`${s.device.id} (${s.device.name})`;
    const rd=document.getElementById("ready");rd.textContent=s.ready?"ready":"not ready";rd.className=s.ready?"ok":"bad";
    document.getElementById("version").textContent="v"+s.version;
    document.getElementById("decisions").innerHTML=s.recent.map(d=>`<tr><td>${esc(d.time)}</td><td class="${d.decision==="ACCEPTED"?"ok":"bad"}">${esc(d.decision)}</td><td>${esc(d.reason)}</td><td>${esc(d.e2e_ms)}</td></tr>`).join("");
    dl(document.getElementById("outbox"),{...s.outbox,link:s.platform.link,heartbeat:s.platform.heartbeat_status,heartbeat_age_s:s.platform.heartbeat_age_s,last_error:s.platform.last_error});
    dl(document.getElementById("checks"),s.checks);
    const now=Date.now()/1000,fps=lastT?(s.frames_processed-lastFrames)/(now-lastT):0;lastFrames=s.frames_processed;lastT=now;
    hist.push({p50:s.latency_ms.e2e_p50,p95:s.latency_ms.e2e_p95,fps});if(hist.length>120)hist.shift();draw();
    document.getElementById("frame").src="/api/frame.jpg?t="+Date.now();
  }catch(e){document.getElementById("ready").textContent="no connection";}
}
tick();setInterval(tick,2000);
</script></body></html>
"""
