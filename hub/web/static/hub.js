// Registry Hub UI: select-all for bulk actions, confirmation of risky buttons, and the
// queue's per-rule counts (fetched after the page is shown).
// Everything works without it; it only saves clicks.
document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll('#bulk input[name="ids"]').forEach((box) => {
        box.checked = all.checked;
      });
    });
  }
  // Per-rule counts of the queue's filter, fetched after the page is shown.
  const counts = document.querySelector("nav.rule-counts[data-counts]");
  if (counts) {
    fetch(counts.dataset.counts, { credentials: "same-origin" })
      .then((resp) => (resp.ok ? resp.json() : {}))
      .then((byRule) => {
        counts.querySelectorAll(".chip[data-rule]").forEach((chip) => {
          const c = byRule[chip.dataset.rule];
          if (!c) return;
          chip.querySelector("b").textContent = (c.exact ? "" : "≈") + c.n.toLocaleString((document.documentElement.lang || "en") + "-u-nu-latn");
          chip.classList.toggle("zero", c.n === 0);
        });
      })
      .catch(() => {});
  }
  // The queue filter's overdue count, fetched after the page is shown too.
  const overdue = document.querySelector("#overdue-count[data-count]");
  if (overdue) {
    fetch(overdue.dataset.count, { credentials: "same-origin" })
      .then((resp) => (resp.ok ? resp.json() : null))
      .then((c) => {
        if (!c) return;
        overdue.querySelector("b").textContent = (c.exact ? "" : "≈") + c.n.toLocaleString((document.documentElement.lang || "en") + "-u-nu-latn");
        overdue.classList.toggle("zero", c.n === 0);
      })
      .catch(() => {});
  }
  // A dismissal reason that needs words makes the form's free text required.
  document.querySelectorAll('select[name="reason_code"]').forEach((select) => {
    const note = select.form && select.form.querySelector('input[name="note"]');
    if (!note) return;
    const sync = () => {
      const option = select.selectedOptions[0];
      note.required = !!option && option.dataset.noteRequired === "true";
    };
    select.addEventListener("change", sync);
    sync();
  });
  document.querySelectorAll("button[data-confirm]").forEach((button) => {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) event.preventDefault();
    });
  });
  // The language selector saves the choice as soon as one is picked.
  document.querySelectorAll("form.locale select").forEach((select) => {
    select.addEventListener("change", () => select.form.requestSubmit());
  });
});

// Keyboard shortcuts (listed on the "?" overlay, templates/_shortcuts.html): j/n next,
// k/p previous, a assign to me, r resolve, d the dismiss form, c the citizen's page,
// / search. Never while typing in a field.
document.addEventListener("DOMContentLoaded", () => {
  const dialog = document.getElementById("shortcuts");
  if (!dialog) return;
  const typing = (el) =>
    el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
  const actionForm = (name) => document.querySelector(`.actions form[action$="/${name}"]`);
  const follow = (selector) => {
    const link = document.querySelector(selector);
    if (!link) return false;
    window.location.assign(link.href);
    return true;
  };
  const rows = () => Array.from(document.querySelectorAll("table.queue tbody tr[data-id]"));
  const moveRow = (step) => {
    const all = rows();
    if (!all.length) return false;
    const at = all.findIndex((tr) => tr.classList.contains("kb-current"));
    const next = all[Math.min(Math.max(at + step, 0), all.length - 1)];
    all.forEach((tr) => tr.classList.toggle("kb-current", tr === next));
    next.querySelector("a[href^='/mismatches/']")?.focus();
    return true;
  };
  const handlers = {
    j: () => moveRow(1) || follow("#nav-next"),
    n: () => moveRow(1) || follow("#nav-next"),
    k: () => moveRow(-1) || follow("#nav-prev"),
    p: () => moveRow(-1) || follow("#nav-prev"),
    a: () => {
      const form = actionForm("assign");
      if (!form) return false;
      const who = form.querySelector('select[name="assignee"]');
      if (who) who.value = dialog.dataset.user;
      form.requestSubmit();
      return true;
    },
    r: () => {
      const form = actionForm("resolve");
      if (!form) return false;
      form.requestSubmit();
      return true;
    },
    d: () => {
      const field = actionForm("dismiss")?.querySelector(
        "select, input:not([type=hidden]), textarea"
      );
      if (!field) return false;
      field.focus();
      return true;
    },
    c: () => follow("a.citizen-link"),
    "/": () => {
      const search = document.querySelector('form.filters input[name="q"]');
      if (!search) return false;
      search.focus();
      search.select();
      return true;
    },
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    if (event.key === "?") {
      if (typing(event.target)) return;
      event.preventDefault();
      if (dialog.open) dialog.close();
      else dialog.showModal();
      return;
    }
    if (event.key === "Escape" && typing(event.target)) {
      event.target.blur();
      return;
    }
    if (dialog.open || typing(event.target)) return;
    const handler = handlers[event.key];
    if (handler && handler()) event.preventDefault();
  });
});
