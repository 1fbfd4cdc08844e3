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
