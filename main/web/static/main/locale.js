// Dates, times and money for the page's language (<html lang>) and the
// shop's currency (<html data-currency>, the CURRENCY setting), by the
// browser's Intl. The words come from Django's JavaScript catalog, loaded
// just before this file: gettext(), ngettext(), interpolate().
window.BookTimeLocale = (function () {
  "use strict";

  // Without the catalog (it failed to load), the page still works, in English.
  if (typeof window.gettext !== "function") {
    window.gettext = function (text) {
      return text;
    };
    window.ngettext = function (singular, plural, count) {
      return count === 1 ? singular : plural;
    };
    window.interpolate = function (format, values, named) {
      if (named) {
        return format.replace(/%\(\w+\)s/g, function (match) {
          return String(values[match.slice(2, -2)]);
        });
      }
      var i = 0;
      return format.replace(/%s/g, function () {
        return String(values[i++]);
      });
    };
  }

  var root = document.documentElement;
  var lang = root.lang || "en-gb";
  var currency = root.dataset.currency || "GBP";
  var formats = {};

  function format(name, options) {
    if (!formats[name]) {
      try {
        formats[name] = new Intl.DateTimeFormat(lang, options);
      } catch (err) {
        formats[name] = new Intl.DateTimeFormat(undefined, options); // a language the browser lacks
      }
    }
    return formats[name];
  }

  function asDate(value) {
    return value instanceof Date ? value : new Date(value);
  }

  // "14:05" (or "下午2:05"): a time of day.
  function time(value) {
    return format("time", { hour: "2-digit", minute: "2-digit" }).format(asDate(value));
  }

  // A time today, or the day and the time before today: "14:05", "6 Dec 14:05", "12月6日 14:05".
  function when(value) {
    var date = asDate(value);
    if (date.toDateString() === new Date().toDateString()) return time(date);
    return format("day", { day: "numeric", month: "short" }).format(date) + " " + time(date);
  }

  // The date and the time in full, for a tooltip.
  function full(value) {
    return format("full", { dateStyle: "medium", timeStyle: "short" }).format(asDate(value));
  }

  // An amount in the shop's currency: "£12.50", "€12,50".
  var moneyFormat = null;
  function money(amount) {
    if (!moneyFormat) moneyFormat = new Intl.NumberFormat(lang, { style: "currency", currency: currency });
    return moneyFormat.format(Number(amount));
  }

  // Names in a list: "Ann, Bob and Cy", "Ann、Bob和Cy".
  function list(names) {
    try {
      return new Intl.ListFormat(lang, { style: "long", type: "conjunction" }).format(names);
    } catch (err) {
      return names.join(", ");
    }
  }

  return { lang: lang, currency: currency, time: time, when: when, full: full, money: money, list: list };
})();
