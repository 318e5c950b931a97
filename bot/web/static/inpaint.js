// Vary (Region) editor: the user drags rectangles or paints with a brush over the picture; the
// selection goes to the bot as shapes in the picture's own pixels and the bot draws the mask.
(() => {
  "use strict";
  const strings = JSON.parse(document.getElementById("strings").textContent);
  const picture = document.getElementById("picture");
  const canvas = document.getElementById("overlay");
  const context = canvas.getContext("2d");
  const status = document.getElementById("status");
  const form = document.getElementById("form");
  const submit = document.getElementById("submit");
  const brushSize = document.getElementById("brush-size");
  const tools = { rect: document.getElementById("tool-rect"), brush: document.getElementById("tool-brush") };
  const shapes = [];
  let tool = "rect";
  let current = null;

  function say(text, state) {
    status.textContent = text;
    status.dataset.state = state || "";
  }

  function pick(name) {
    tool = name;
    for (const [key, button] of Object.entries(tools)) button.setAttribute("aria-pressed", String(key === name));
  }

  function fit() {
    if (!picture.naturalWidth) return;
    canvas.width = picture.naturalWidth;
    canvas.height = picture.naturalHeight;
    canvas.style.width = picture.clientWidth + "px";
    canvas.style.height = picture.clientHeight + "px";
    draw();
  }

  // Pointer position in the picture's own pixels, whatever size it is shown at.
  function at(event) {
    const box = canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) * canvas.width) / box.width;
    const y = ((event.clientY - box.top) * canvas.height) / box.height;
    return [Math.max(0, Math.min(canvas.width, x)), Math.max(0, Math.min(canvas.height, y))];
  }

  function paint(shape) {
    if (shape.type === "rect") {
      context.lineWidth = Math.max(1, canvas.width / 400);
      context.fillRect(shape.x, shape.y, shape.w, shape.h);
      context.strokeRect(shape.x, shape.y, shape.w, shape.h);
      return;
    }
    context.lineWidth = shape.size;
    context.beginPath();
    shape.points.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
    if (shape.points.length === 1) context.lineTo(shape.points[0][0] + 0.01, shape.points[0][1]);
    context.stroke();
  }

  function draw() {
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = "rgba(255, 255, 255, 0.45)";
    context.strokeStyle = "rgba(255, 255, 255, 0.45)";
    context.lineCap = "round";
    context.lineJoin = "round";
    for (const shape of shapes) paint(shape);
    if (current) paint(current);
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = at(event);
    if (tool === "rect") {
      current = { type: "rect", x, y, w: 0, h: 0 };
    } else {
      const scale = canvas.width / canvas.getBoundingClientRect().width;
      current = { type: "brush", size: Math.max(1, Number(brushSize.value) * scale), points: [[x, y]] };
    }
    draw();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!current) return;
    const [x, y] = at(event);
    if (current.type === "rect") {
      current.w = x - current.x;
      current.h = y - current.y;
    } else {
      const [lx, ly] = current.points[current.points.length - 1];
      if (Math.hypot(x - lx, y - ly) >= 1) current.points.push([x, y]);
    }
    draw();
  });

  function finish() {
    if (!current) return;
    const big = current.type === "brush" || (Math.abs(current.w) >= 2 && Math.abs(current.h) >= 2);
    if (big) shapes.push(current);
    current = null;
    draw();
    if (shapes.length) say("", "");
  }
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);

  tools.rect.addEventListener("click", () => pick("rect"));
  tools.brush.addEventListener("click", () => pick("brush"));
  document.getElementById("undo").addEventListener("click", () => { shapes.pop(); draw(); });
  document.getElementById("clear").addEventListener("click", () => { shapes.length = 0; draw(); });

  function rounded(shape) {
    if (shape.type === "rect") {
      return { type: "rect", x: Math.round(shape.x), y: Math.round(shape.y), w: Math.round(shape.w), h: Math.round(shape.h) };
    }
    return { type: "brush", size: Math.round(shape.size), points: shape.points.map(([x, y]) => [Math.round(x), Math.round(y)]) };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!shapes.length) {
      say(strings.empty_selection, "error");
      return;
    }
    submit.disabled = true;
    say(strings.sending, "sending");
    let answer = null;
    let ok = false;
    try {
      const response = await fetch(window.location.pathname, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prompt: document.getElementById("prompt").value, shapes: shapes.map(rounded) }),
      });
      ok = response.ok;
      answer = await response.json().catch(() => null);
    } catch (error) {
      answer = null;
    }
    if (ok && answer) {
      say(answer.message || strings.submitted, "done");
      if (answer.url) {
        const link = document.createElement("a");
        link.href = answer.url;
        link.textContent = " " + strings.open_discord;
        status.append(link);
      }
      return;
    }
    submit.disabled = false;
    say((answer && answer.error) || strings.network_error, "error");
  });

  picture.addEventListener("load", fit);
  picture.addEventListener("error", () => say(strings.image_failed, "error"));
  window.addEventListener("resize", fit);
  if (picture.complete) fit();
})();
