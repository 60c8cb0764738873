// The timeline: pick free slots into a cart (kept in localStorage), check them, book them.
// The page is drawn by the server; this only adds picking. Without it, slots can still be
// booked through the API, and everything else on the page works.
(function () {
  "use strict";

  var KEY = "labkeeper.cart";
  var SENT = "labkeeper.cart.sent";

  function load() {
    try {
      var items = JSON.parse(window.localStorage.getItem(KEY) || "[]");
      return Array.isArray(items) ? items : [];
    } catch (err) {
      return [];
    }
  }

  function save(items) {
    try {
      window.localStorage.setItem(KEY, JSON.stringify(items));
    } catch (err) {
      /* private mode: the cart lives as long as the page */
    }
  }

  // A page shown after a refused booking gives the cart back.
  function restore() {
    if (!document.querySelector("[data-restore-cart]")) {
      return;
    }
    var sent = window.sessionStorage.getItem(SENT);
    if (sent) {
      window.localStorage.setItem(KEY, sent);
      window.sessionStorage.removeItem(SENT);
    }
  }

  restore();
  var grid = document.getElementById("timeline");
  var form = document.getElementById("cart-form");
  if (!form) {
    return;
  }

  var tz = grid ? grid.getAttribute("data-tz") : "UTC";
  var begin = grid ? Date.parse(grid.getAttribute("data-begin")) : 0;
  var end = grid ? Date.parse(grid.getAttribute("data-end")) : 0;
  var slots = grid ? parseInt(grid.getAttribute("data-slots"), 10) : 1;
  var slotMs = grid ? (end - begin) / slots : 3600000;
  var announce = document.getElementById("tl-announce");
  var list = document.getElementById("cart-items");
  var emptyNote = document.getElementById("cart-empty");
  var checkBox = document.getElementById("cart-check-result");
  var cart = load();
  var formatter;
  try {
    formatter = new Intl.DateTimeFormat(undefined, {
      weekday: "short",
      day: "2-digit",
      month: "short",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
      timeZone: tz,
    });
  } catch (err) {
    formatter = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function say(text) {
    if (announce) {
      announce.textContent = text;
    }
  }

  function show(value) {
    // Slots picked on the grid are UTC instants; slots typed by hand are the lab's local time.
    if (/Z$|[+-]\d\d:\d\d$/.test(value)) {
      return formatter.format(new Date(value));
    }
    return value.replace("T", " ");
  }

  function iso(ms) {
    return new Date(ms).toISOString().replace(/\.000Z$/, "Z");
  }

  function render() {
    list.innerHTML = "";
    cart.forEach(function (item, index) {
      var li = document.createElement("li");
      var label = document.createElement("span");
      var name = document.createElement("strong");
      name.textContent = item.name;
      label.appendChild(name);
      label.appendChild(document.createTextNode(show(item.start) + " → " + show(item.end)));
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = "item";
      input.value = item.device_id + "|" + item.start + "|" + item.end;
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "btn btn-ghost btn-small";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove " + item.name + " " + show(item.start) + " from the cart");
      remove.addEventListener("click", function () {
        cart.splice(index, 1);
        save(cart);
        render();
        say(item.name + " removed from the cart");
      });
      li.appendChild(label);
      li.appendChild(input);
      li.appendChild(remove);
      list.appendChild(li);
    });
    emptyNote.hidden = cart.length > 0;
    document.getElementById("cart-book").disabled = cart.length === 0;
    document.getElementById("cart-check").disabled = cart.length === 0;
    drawPicks();
  }

  function drawPicks() {
    if (!grid) {
      return;
    }
    grid.querySelectorAll(".tl-pick").forEach(function (el) {
      el.remove();
    });
    cart.forEach(function (item) {
      var row = grid.querySelector('.tl-row[data-device="' + item.device_id + '"]');
      var s = Date.parse(item.start);
      var e = Date.parse(item.end);
      if (!row || isNaN(s) || isNaN(e) || e <= begin || s >= end) {
        return;
      }
      var div = document.createElement("div");
      div.className = "tl-pick";
      div.style.left = (Math.max(s, begin) - begin) / (end - begin) * 100 + "%";
      div.style.width = (Math.min(e, end) - Math.max(s, begin)) / (end - begin) * 100 + "%";
      row.querySelector(".tl-lane").appendChild(div);
    });
  }

  function overlapsCart(deviceId, s, e) {
    return cart.some(function (item) {
      return (
        String(item.device_id) === String(deviceId) &&
        Date.parse(item.start) < e &&
        Date.parse(item.end) > s
      );
    });
  }

  // Why a slot range of a row cannot go in the cart, or "".
  function problem(row, first, last) {
    if (row.getAttribute("data-bookable") !== "1") {
      return "This device cannot be booked";
    }
    var s = begin + first * slotMs;
    var e = begin + (last + 1) * slotMs;
    if (s < Date.now() - 60000) {
      return "That time has passed";
    }
    var busy = JSON.parse(row.getAttribute("data-busy") || "[]");
    var lo = (first / slots) * 100;
    var hi = ((last + 1) / slots) * 100;
    var queue = document.getElementById("cart-waitlist");
    for (var i = 0; i < busy.length && !(queue && queue.checked); i++) {
      if (busy[i][0] < hi - 0.0001 && busy[i][1] > lo + 0.0001) {
        return "That time is taken; tick “Join the waitlist” to queue for it";
      }
    }
    if (overlapsCart(row.getAttribute("data-device"), s, e)) {
      return "That time is already in your cart";
    }
    return "";
  }

  function add(row, first, last) {
    var why = problem(row, first, last);
    var name = row.getAttribute("data-name");
    if (why) {
      say(name + ": " + why);
      flashRow(row, why);
      return false;
    }
    var item = {
      device_id: parseInt(row.getAttribute("data-device"), 10),
      name: name,
      start: iso(begin + first * slotMs),
      end: iso(begin + (last + 1) * slotMs),
    };
    cart.push(item);
    save(cart);
    render();
    checkBox.innerHTML = "";
    say(name + " " + show(item.start) + " to " + show(item.end) + " added to the cart");
    return true;
  }

  function flashRow(row, why) {
    var lane = row.querySelector(".tl-lane");
    lane.setAttribute("title", why);
    window.setTimeout(function () {
      lane.removeAttribute("title");
    }, 2500);
  }

  // -- pointer: click or drag along a row
  function slotAt(lane, clientX) {
    var rect = lane.getBoundingClientRect();
    var x = Math.min(Math.max(clientX - rect.left, 0), rect.width - 1);
    return Math.floor((x / rect.width) * slots);
  }

  function cursorOf(lane) {
    var c = lane.querySelector(".tl-cursor");
    if (!c) {
      c = document.createElement("div");
      c.className = "tl-cursor";
      lane.appendChild(c);
    }
    return c;
  }

  function place(lane, first, last) {
    var c = cursorOf(lane);
    c.style.left = (first / slots) * 100 + "%";
    c.style.width = ((last - first + 1) / slots) * 100 + "%";
    c.classList.toggle("is-busy", !!problem(lane.parentNode, first, last));
  }

  function clearCursor(lane) {
    var c = lane.querySelector(".tl-cursor");
    if (c) {
      c.remove();
    }
  }

  var drag = null;
  if (grid && grid.getAttribute("data-can-book") === "1") {
    grid.addEventListener("pointerdown", function (event) {
      var lane = event.target.closest(".tl-lane");
      if (!lane || event.button !== 0 || event.target.closest("a") || lane.classList.contains("tl-off")) {
        return;
      }
      var slot = slotAt(lane, event.clientX);
      drag = { lane: lane, from: slot, to: slot };
      place(lane, slot, slot);
      event.preventDefault();
    });
    grid.addEventListener("pointermove", function (event) {
      if (!drag) {
        return;
      }
      drag.to = slotAt(drag.lane, event.clientX);
      place(drag.lane, Math.min(drag.from, drag.to), Math.max(drag.from, drag.to));
    });
    document.addEventListener("pointerup", function () {
      if (!drag) {
        return;
      }
      var d = drag;
      drag = null;
      clearCursor(d.lane);
      add(d.lane.parentNode, Math.min(d.from, d.to), Math.max(d.from, d.to));
    });

    // -- keyboard: arrows move a cursor, Shift widens it, Enter adds it
    grid.addEventListener("keydown", function (event) {
      var lane = event.target.closest && event.target.closest(".tl-lane[tabindex]");
      if (!lane || event.target !== lane) {
        return;
      }
      var now = Math.max(0, Math.ceil(((Date.now() - begin) / (end - begin)) * slots));
      var first = lane._first === undefined ? Math.min(now, slots - 1) : lane._first;
      var last = lane._last === undefined ? first : lane._last;
      var key = event.key;
      if (key === "ArrowRight" || key === "ArrowLeft") {
        var step = key === "ArrowRight" ? 1 : -1;
        if (event.shiftKey) {
          last = Math.min(Math.max(last + step, first), slots - 1);
        } else {
          first = Math.min(Math.max(first + step, 0), slots - 1);
          last = first;
        }
      } else if (key === "Home") {
        first = last = Math.min(now, slots - 1);
      } else if (key === "Enter" || key === " ") {
        if (lane._first !== undefined && add(lane.parentNode, first, last)) {
          clearCursor(lane);
          lane._first = lane._last = undefined;
        }
        event.preventDefault();
        return;
      } else if (key === "ArrowDown" || key === "ArrowUp") {
        var row = lane.parentNode;
        var next = key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling;
        while (next && !next.querySelector(".tl-lane[tabindex]")) {
          next = key === "ArrowDown" ? next.nextElementSibling : next.previousElementSibling;
        }
        if (next) {
          var other = next.querySelector(".tl-lane[tabindex]");
          other._first = lane._first;
          other._last = lane._last;
          clearCursor(lane);
          other.focus();
          if (other._first !== undefined) {
            place(other, other._first, other._last);
          }
        }
        event.preventDefault();
        return;
      } else if (key === "Escape") {
        clearCursor(lane);
        lane._first = lane._last = undefined;
        return;
      } else {
        return;
      }
      event.preventDefault();
      lane._first = first;
      lane._last = last;
      place(lane, first, last);
      var row2 = lane.parentNode;
      var why = problem(row2, first, last);
      say(
        row2.getAttribute("data-name") + ": " + show(iso(begin + first * slotMs)) + " to " +
          show(iso(begin + (last + 1) * slotMs)) + (why ? ", " + why : ", free: Enter adds it")
      );
    });
    grid.addEventListener("focusout", function (event) {
      var lane = event.target.closest && event.target.closest(".tl-lane");
      if (lane && !drag) {
        clearCursor(lane);
      }
    });
  }

  // -- typed slots
  var manual = document.getElementById("manual-add");
  if (manual) {
    manual.addEventListener("click", function () {
      var select = document.getElementById("manual-device");
      var start = document.getElementById("manual-start").value;
      var stop = document.getElementById("manual-end").value;
      var error = document.getElementById("manual-error");
      error.hidden = true;
      if (!select.value || !start || !stop || stop <= start) {
        error.textContent = !select.value
          ? "No bookable device on this page"
          : "Give a start and an end after it";
        error.hidden = false;
        return;
      }
      var item = {
        device_id: parseInt(select.value, 10),
        name: select.options[select.selectedIndex].text,
        start: start,
        end: stop,
      };
      cart.push(item);
      save(cart);
      render();
      say(item.name + " added to the cart");
    });
  }

  // -- the conflict check (an HTML fragment from the server)
  document.getElementById("cart-check").addEventListener("click", function () {
    var token = form.querySelector('input[name="csrf_token"]').value;
    checkBox.textContent = "Checking…";
    fetch("/timeline/check", {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRF-Token": token, Accept: "text/html" },
      credentials: "same-origin",
    })
      .then(function (response) {
        return response.text();
      })
      .then(function (html) {
        checkBox.innerHTML = html;
      })
      .catch(function () {
        checkBox.textContent = "The check could not reach the server; try again.";
      });
  });

  document.getElementById("cart-clear").addEventListener("click", function () {
    cart = [];
    save(cart);
    render();
    checkBox.innerHTML = "";
    say("The cart is empty");
  });

  form.addEventListener("submit", function () {
    // Kept for the page that answers if the booking is refused; emptied otherwise.
    window.sessionStorage.setItem(SENT, JSON.stringify(cart));
    save([]);
  });

  // Another tab changed the cart.
  window.addEventListener("storage", function (event) {
    if (event.key === KEY) {
      cart = load();
      render();
    }
  });

  render();
})();
