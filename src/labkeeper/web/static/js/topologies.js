// The topology editor: the drawing lives here (nodes and edges as the API takes them), drawn with
// Cytoscape.js when it is there and listed in the devices and links tables in any case. Every
// change asks the server (POST /topologies/validate) what the topology service says of it.
(function () {
  "use strict";

  var root = document.getElementById("topology-editor");
  var dataEl = document.getElementById("topology-data");
  if (!root || !dataEl) {
    return;
  }
  var data = JSON.parse(dataEl.textContent);
  var editable = !!data.editable;
  var nodes = (data.nodes || []).map(function (n) {
    return Object.assign({}, n);
  });
  var edges = (data.edges || []).map(function (e) {
    return Object.assign({}, e);
  });
  var devices = {}; // id -> device (ports, switch)
  (data.devices || []).concat(data.palette || []).forEach(function (d) {
    devices[d.id] = d;
  });
  var problems = data.problems || [];
  var patches = data.patches || [];
  var csrf = "";
  try {
    csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
  } catch (err) {
    csrf = "";
  }

  var statusEl = document.getElementById("canvas-status");
  var validationEl = document.getElementById("validation");
  var graphField = document.getElementById("graph-field");
  var cy = null;
  var picked = null; // node id picked as the source of a link drawn on the canvas

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      node.setAttribute(key, attrs[key]);
    });
    if (text !== undefined && text !== null) {
      node.textContent = text;
    }
    return node;
  }

  function say(text) {
    if (statusEl) {
      statusEl.textContent = text;
    }
  }

  function nodeById(id) {
    return nodes.filter(function (n) {
      return n.id === id;
    })[0];
  }

  function deviceOf(node) {
    return node ? devices[node.device_id] : null;
  }

  function nameOf(node) {
    var d = deviceOf(node);
    return d ? d.name : node ? node.id : "?";
  }

  function port(value) {
    return value === null || value === undefined ? "none" : String(value);
  }

  // -- changes ---------------------------------------------------------------------------------

  function freeNodeId(deviceId) {
    var base = "n" + deviceId;
    var id = base;
    var i = 2;
    while (nodeById(id)) {
      id = base + "-" + i++;
    }
    return id;
  }

  function nextEdgeId() {
    var top = 0;
    edges.forEach(function (e) {
      var m = /^e(\d+)$/.exec(e.id);
      if (m) {
        top = Math.max(top, parseInt(m[1], 10));
      }
    });
    return "e" + (top + 1);
  }

  function addNode(deviceId) {
    var d = devices[deviceId];
    if (!d) {
      return;
    }
    var count = nodes.length;
    var node = {
      id: freeNodeId(deviceId),
      device_id: d.id,
      kind: null,
      params: {},
      x: 100 + (count % 4) * 170,
      y: 80 + Math.floor(count / 4) * 130,
    };
    nodes.push(node);
    if (cy) {
      cy.add(cyNode(node));
      cy.fit(undefined, 40);
    }
    changed("Added " + d.name + ".");
  }

  function addEdge(source, target) {
    if (source === target) {
      say("A link joins two different devices.");
      return;
    }
    var edge = { id: nextEdgeId(), source: source, target: target, params: {} };
    edges.push(edge);
    if (cy) {
      cy.add(cyEdge(edge));
    }
    changed(
      "Linked " + nameOf(nodeById(source)) + " output to " + nameOf(nodeById(target)) + " input."
    );
  }

  function removeNode(id) {
    var node = nodeById(id);
    nodes = nodes.filter(function (n) {
      return n.id !== id;
    });
    edges = edges.filter(function (e) {
      return e.source !== id && e.target !== id;
    });
    if (cy) {
      cy.getElementById(id).remove();
    }
    changed("Removed " + nameOf(node) + " and its links.");
  }

  function removeEdge(id) {
    edges = edges.filter(function (e) {
      return e.id !== id;
    });
    if (cy) {
      cy.getElementById(id).remove();
    }
    changed("Removed link " + id + ".");
  }

  // The drawing as the save form posts it: only what is set, to keep big drawings small.
  function compact() {
    return JSON.stringify({
      nodes: nodes.map(function (n) {
        var out = { id: n.id, device_id: n.device_id, x: Number(n.x) || 0, y: Number(n.y) || 0 };
        if (n.kind) {
          out.kind = n.kind;
        }
        if (n.params && Object.keys(n.params).length) {
          out.params = n.params;
        }
        return out;
      }),
      edges: edges.map(function (e) {
        var out = { id: e.id, source: e.source, target: e.target };
        if (e.params && Object.keys(e.params).length) {
          out.params = e.params;
        }
        return out;
      }),
    });
  }

  var timer = null;
  function changed(message) {
    if (message) {
      say(message);
    }
    renderTables();
    renderForms();
    if (graphField) {
      graphField.value = compact();
    }
    window.clearTimeout(timer);
    timer = window.setTimeout(validate, 200);
  }

  // -- validation ------------------------------------------------------------------------------

  var asked = 0;
  function validate() {
    var mine = ++asked;
    fetch(data.validate_url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRF-Token": csrf,
      },
      body: JSON.stringify({ nodes: nodes, edges: edges }),
    })
      .then(function (response) {
        return response.json().then(function (body) {
          return { ok: response.ok, body: body };
        });
      })
      .then(function (answer) {
        if (mine !== asked) {
          return; // a later change asked again
        }
        if (!answer.ok) {
          var message = (answer.body.error && answer.body.error.message) || "the check failed";
          problems = [{ code: "invalid", message: message }];
          patches = [];
        } else {
          problems = answer.body.problems || [];
          patches = answer.body.patches || [];
        }
        renderValidation();
        renderTables();
        markCanvas();
      })
      .catch(function () {
        if (mine === asked && validationEl) {
          validationEl.innerHTML = "";
          validationEl.appendChild(
            el("p", { class: "validation-bad" }, "The drawing could not be checked just now.")
          );
        }
      });
  }

  function renderValidation() {
    if (!validationEl) {
      return;
    }
    validationEl.innerHTML = "";
    if (!nodes.length) {
      validationEl.appendChild(el("p", { class: "muted" }, "Nothing drawn yet."));
      return;
    }
    if (problems.length) {
      validationEl.appendChild(
        el(
          "p",
          { class: "validation-bad" },
          problems.length + " problem" + (problems.length === 1 ? "" : "s") + ":"
        )
      );
      var list = el("ul", { class: "problem-list" });
      problems.forEach(function (p) {
        list.appendChild(el("li", {}, p.message));
      });
      validationEl.appendChild(list);
    } else {
      var n = edges.length;
      validationEl.appendChild(
        el(
          "p",
          { class: "validation-ok" },
          "No problems: " +
            n +
            " link" +
            (n === 1 ? " maps" : "s map") +
            " to " +
            patches.length +
            " switch patch" +
            (patches.length === 1 ? "" : "es") +
            "."
        )
      );
    }
  }

  // -- tables and forms ------------------------------------------------------------------------

  function problemsOf(key, id) {
    return problems.filter(function (p) {
      return String(p[key]) === id && (key === "edge" || p.edge === undefined || p.edge === null);
    });
  }

  function renderTables() {
    if (!editable) {
      return; // the server's tables (and the live patch states) stay as they are
    }
    var nodesBody = document.getElementById("nodes-body");
    var linksBody = document.getElementById("links-body");
    if (nodesBody) {
      nodesBody.innerHTML = "";
      nodes.forEach(function (n) {
        var d = deviceOf(n);
        var tr = el("tr", { "data-node": n.id });
        var cell = el("td");
        cell.appendChild(el("span", { class: "cell-main" }, nameOf(n)));
        problemsOf("node", n.id).forEach(function (p) {
          cell.appendChild(el("span", { class: "cell-sub error-text" }, p.message));
        });
        tr.appendChild(cell);
        tr.appendChild(el("td", {}, d && d.switch ? d.switch : "—"));
        tr.appendChild(el("td", { class: "num" }, d ? port(d.in_port) : "—"));
        tr.appendChild(el("td", { class: "num" }, d ? port(d.out_port) : "—"));
        var actions = el("td", { class: "num" });
        actions.appendChild(
          el(
            "button",
            {
              type: "button",
              class: "btn btn-ghost btn-small",
              "data-remove-node": n.id,
              "aria-label": "Remove " + nameOf(n),
            },
            "Remove"
          )
        );
        tr.appendChild(actions);
        nodesBody.appendChild(tr);
      });
      if (!nodes.length) {
        var empty = el("tr", { class: "empty-row" });
        var td = el("td", { colspan: "5" });
        td.appendChild(el("span", { class: "muted" }, "No devices yet. Add one from the inventory."));
        empty.appendChild(td);
        nodesBody.appendChild(empty);
      }
    }
    if (linksBody) {
      var plan = {};
      patches.forEach(function (p) {
        plan[p.edge] = p;
      });
      linksBody.innerHTML = "";
      edges.forEach(function (e) {
        var a = nodeById(e.source);
        var b = nodeById(e.target);
        var da = deviceOf(a);
        var db = deviceOf(b);
        var trouble = problemsOf("edge", e.id);
        var tr = el("tr", { "data-edge": e.id });
        if (trouble.length) {
          tr.className = "has-problem";
        }
        tr.appendChild(el("td", { class: "mono" }, e.id));
        var from = el("td");
        from.appendChild(el("span", { class: "cell-main" }, nameOf(a)));
        from.appendChild(el("span", { class: "cell-sub" }, "output port " + port(da && da.out_port)));
        tr.appendChild(from);
        var to = el("td");
        to.appendChild(el("span", { class: "cell-main" }, nameOf(b)));
        to.appendChild(el("span", { class: "cell-sub" }, "input port " + port(db && db.in_port)));
        tr.appendChild(to);
        var p = plan[e.id];
        tr.appendChild(
          el(
            "td",
            { class: "nowrap mono" },
            p ? p.switch_name + ": " + p.ingress_port + " → " + p.egress_port : "none"
          )
        );
        var check = el("td");
        if (trouble.length) {
          check.appendChild(el("span", { class: "badge badge-danger" }, "problem"));
          trouble.forEach(function (t) {
            check.appendChild(el("span", { class: "cell-sub" }, t.message));
          });
        } else {
          check.appendChild(el("span", { class: "badge badge-success" }, "ok"));
        }
        tr.appendChild(check);
        var actions = el("td", { class: "num" });
        actions.appendChild(
          el(
            "button",
            {
              type: "button",
              class: "btn btn-ghost btn-small",
              "data-remove-edge": e.id,
              "aria-label": "Remove link " + e.id,
            },
            "Remove"
          )
        );
        tr.appendChild(actions);
        linksBody.appendChild(tr);
      });
      if (!edges.length) {
        var none = el("tr", { class: "empty-row" });
        var cell2 = el("td", { colspan: "6" });
        cell2.appendChild(
          el(
            "span",
            { class: "muted" },
            "No links yet. Connect two devices: the first one's output port to the second one's input port."
          )
        );
        none.appendChild(cell2);
        linksBody.appendChild(none);
      }
    }
  }

  function fill(select, options, blank) {
    var keep = select.value;
    select.innerHTML = "";
    if (!options.length) {
      select.appendChild(el("option", { value: "" }, blank));
      select.disabled = true;
      return;
    }
    select.disabled = false;
    options.forEach(function (o) {
      select.appendChild(el("option", { value: o[0] }, o[1]));
    });
    if (
      options.some(function (o) {
        return String(o[0]) === keep;
      })
    ) {
      select.value = keep;
    }
  }

  function renderForms() {
    var deviceSelect = document.getElementById("add-device");
    var sourceSelect = document.getElementById("link-source");
    var targetSelect = document.getElementById("link-target");
    if (!deviceSelect) {
      return;
    }
    var placed = {};
    nodes.forEach(function (n) {
      placed[n.device_id] = true;
    });
    fill(
      deviceSelect,
      (data.palette || [])
        .filter(function (d) {
          return !placed[d.id];
        })
        .map(function (d) {
          return [
            d.id,
            d.name + " (" + d.switch + ": in " + port(d.in_port) + ", out " + port(d.out_port) + ")",
          ];
        }),
      "Every device is placed"
    );
    var used = {};
    edges.forEach(function (e) {
      used["out:" + e.source] = true;
      used["in:" + e.target] = true;
    });
    fill(
      sourceSelect,
      nodes
        .filter(function (n) {
          var d = deviceOf(n);
          return d && d.out_port !== null && d.out_port !== undefined;
        })
        .map(function (n) {
          var d = deviceOf(n);
          var busy = used["out:" + n.id] ? " (in use)" : "";
          return [n.id, d.name + " · output port " + d.out_port + busy];
        }),
      "Place a device first"
    );
    fill(
      targetSelect,
      nodes
        .filter(function (n) {
          var d = deviceOf(n);
          return d && d.in_port !== null && d.in_port !== undefined;
        })
        .map(function (n) {
          var d = deviceOf(n);
          var busy = used["in:" + n.id] ? " (in use)" : "";
          return [n.id, d.name + " · input port " + d.in_port + busy];
        }),
      "Place a device first"
    );
    // Offer a different device as B than the one chosen as A.
    if (
      targetSelect.value === sourceSelect.value &&
      targetSelect.options.length > 1
    ) {
      for (var i = 0; i < targetSelect.options.length; i++) {
        if (targetSelect.options[i].value !== sourceSelect.value) {
          targetSelect.value = targetSelect.options[i].value;
          break;
        }
      }
    }
  }

  // -- the canvas ------------------------------------------------------------------------------

  function cyNode(n) {
    var d = deviceOf(n);
    var label = nameOf(n);
    if (d) {
      label += "\nin " + port(d.in_port) + " · out " + port(d.out_port);
    }
    return {
      group: "nodes",
      data: { id: n.id, label: label },
      position: { x: Number(n.x) || 0, y: Number(n.y) || 0 },
    };
  }

  function cyEdge(e) {
    return { group: "edges", data: { id: e.id, source: e.source, target: e.target, label: e.id } };
  }

  function markCanvas() {
    if (!cy) {
      return;
    }
    cy.elements().removeClass("problem");
    problems.forEach(function (p) {
      if (p.edge !== undefined && p.edge !== null) {
        cy.getElementById(String(p.edge)).addClass("problem");
      } else if (p.node !== undefined && p.node !== null) {
        cy.getElementById(String(p.node)).addClass("problem");
      }
    });
  }

  // During an active booking: colour the links the switch has patched (the table refreshes).
  function showPatchStates() {
    if (!cy) {
      return;
    }
    cy.edges().removeClass("patched");
    document.querySelectorAll("#links-body tr[data-state]").forEach(function (row) {
      if (row.getAttribute("data-state") === "applied") {
        cy.getElementById(row.getAttribute("data-edge")).addClass("patched");
      }
    });
  }
  document.addEventListener("htmx:afterSwap", showPatchStates);

  function startCanvas() {
    var container = document.getElementById("topology-canvas");
    if (!container || typeof window.cytoscape !== "function") {
      return;
    }
    var spread = nodes.length > 1 && nodes.every(function (n) {
      return !n.x && !n.y;
    });
    cy = window.cytoscape({
      container: container,
      elements: nodes.map(cyNode).concat(edges.map(cyEdge)),
      layout: { name: spread ? "circle" : "preset", padding: 40 },
      minZoom: 0.3,
      maxZoom: 2.5,
      wheelSensitivity: 0.3,
      autoungrabify: !editable,
      boxSelectionEnabled: false,
      style: [
        {
          selector: "node",
          style: {
            shape: "round-rectangle",
            width: 120,
            height: 46,
            "background-color": "#eaf0fd",
            "border-width": 2,
            "border-color": "#2450c2",
            label: "data(label)",
            "text-wrap": "wrap",
            "text-valign": "center",
            "font-size": 12,
            color: "#161b26",
          },
        },
        {
          selector: "edge",
          style: {
            width: 3,
            "line-color": "#535d6d",
            "target-arrow-color": "#535d6d",
            "target-arrow-shape": "triangle",
            "curve-style": "bezier",
            label: "data(label)",
            "font-size": 11,
            "text-background-color": "#ffffff",
            "text-background-opacity": 1,
            "text-background-padding": 2,
          },
        },
        { selector: ".problem", style: { "border-color": "#b42318", "line-color": "#b42318", "target-arrow-color": "#b42318", "background-color": "#fdecea" } },
        { selector: ".picked", style: { "border-width": 4, "border-color": "#067647", "background-color": "#e5f6ed" } },
        { selector: ".patched", style: { width: 5, "line-color": "#067647", "target-arrow-color": "#067647", color: "#067647" } },
      ],
    });
    if (spread) {
      cy.nodes().forEach(function (n) {
        var node = nodeById(n.id());
        if (node) {
          node.x = Math.round(n.position("x"));
          node.y = Math.round(n.position("y"));
        }
      });
    }
    if (nodes.length) {
      cy.fit(undefined, 40);
      if (cy.zoom() > 1.4) {
        cy.zoom(1.4);
        cy.center();
      }
    }
    markCanvas();
    showPatchStates();
    if (!editable) {
      return;
    }
    cy.on("dragfree", "node", function (event) {
      var node = nodeById(event.target.id());
      if (node) {
        node.x = Math.round(event.target.position("x"));
        node.y = Math.round(event.target.position("y"));
        if (graphField) {
          graphField.value = compact();
        }
      }
    });
    cy.on("tap", "node", function (event) {
      var id = event.target.id();
      if (picked === null) {
        picked = id;
        event.target.addClass("picked");
        say(
          "Linking from " + nameOf(nodeById(id)) + ": click the device that receives its output."
        );
        return;
      }
      var source = picked;
      cy.getElementById(source).removeClass("picked");
      picked = null;
      if (source === id) {
        say("Linking cancelled.");
        return;
      }
      addEdge(source, id);
    });
    cy.on("tap", function (event) {
      if (event.target === cy && picked !== null) {
        cy.getElementById(picked).removeClass("picked");
        picked = null;
        say("Linking cancelled.");
      }
    });
  }

  // -- wiring ----------------------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var target = event.target.closest && event.target.closest("[data-remove-node],[data-remove-edge]");
    if (!target || !editable) {
      return;
    }
    if (target.hasAttribute("data-remove-node")) {
      removeNode(target.getAttribute("data-remove-node"));
    } else {
      removeEdge(target.getAttribute("data-remove-edge"));
    }
  });

  var deviceForm = document.getElementById("add-device-form");
  if (deviceForm) {
    deviceForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var select = document.getElementById("add-device");
      if (select.value) {
        addNode(parseInt(select.value, 10));
        select.focus();
      }
    });
  }
  var linkForm = document.getElementById("add-link-form");
  if (linkForm) {
    linkForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var source = document.getElementById("link-source").value;
      var target = document.getElementById("link-target").value;
      if (source && target) {
        addEdge(source, target);
      }
    });
    document.getElementById("link-source").addEventListener("change", function () {
      renderForms();
    });
  }
  var saveForm = document.getElementById("save-form");
  if (saveForm && graphField && editable) {
    saveForm.addEventListener("submit", function () {
      graphField.value = compact();
    });
  }

  function boot() {
    startCanvas();
    renderForms();
    if (editable) {
      renderTables();
    }
    window.labkeeperTopology = {
      cy: cy,
      graph: function () {
        return { nodes: nodes, edges: edges };
      },
    };
  }
  // cytoscape.min.js is deferred too and comes first in the page, so it is loaded by now.
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
})();
