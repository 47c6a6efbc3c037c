/*
 * The draft spec editor on a bot's change form (add and change).
 *
 * Wraps the draft_spec textarea in a JSON editor (jsoneditor, vendored):
 * a tree mode with the spec's JSON Schema (node types and enum values in
 * drop-downs, completion of field names and values, templates of each node
 * type in the context menu's Insert), and a code mode for editing the text.
 * The textarea stays the form field: every change is written back into it,
 * so saving works as without this script, which only adds the editor.
 *
 * A change (debounced) posts the draft's text to the check endpoint; its
 * errors and warnings are listed beside the editor, each with its path, and
 * marked in the editor at that path (or the nearest part of it that exists).
 *
 * Stable hooks, for people and browser tests:
 *   #spec-editor          the editor's container (.jsoneditor inside it)
 *   #spec-problems        <ul>: one <li data-path="nodes.main.text"
 *                         data-severity="error|warning"> per problem of the
 *                         last check, in its order; data-path "" is the spec
 *   #spec-problems-status "Checking…", "No problems.", "2 errors, 1 warning."
 *                         or why the check failed; data-state="checking|done|
 *                         failed" on it
 *   textarea#id_draft_spec  the form field, hidden while the editor shows
 *
 * Configured by its own <script> tag: data-check-url, data-schema-url.
 */
(function () {
  'use strict';

  var CHECK_DELAY_MS = 500;
  var script = document.currentScript;
  var checkUrl = script.dataset.checkUrl;
  var schemaUrl = script.dataset.schemaUrl;

  // Ajv would report every member of the node union that a node does not
  // match; the server's check gives one message at the exact path, the same
  // as on saving. The schema still drives drop-downs and completion.
  var NO_AJV = {
    compile: function () {
      var validate = function () { return true; };
      validate.errors = null;
      return validate;
    },
    addSchema: function () {},
    removeSchema: function () {}
  };

  function pathParts(path) {
    var parts = [];
    var re = /([^.[\]]+)|\[(\d+)\]/g;
    var match;
    while ((match = re.exec(path)) !== null) {
      parts.push(match[2] !== undefined ? Number(match[2]) : match[1]);
    }
    return parts;
  }

  // The longest start of the path that exists in the document: a missing
  // field is marked on the object that lacks it.
  function existingParts(json, parts) {
    var found = [];
    var value = json;
    for (var i = 0; i < parts.length; i++) {
      if (value === null || typeof value !== 'object' || !(parts[i] in value)) {
        break;
      }
      value = value[parts[i]];
      found.push(parts[i]);
    }
    return found;
  }

  /* The schema, walked along a path with the document beside it. */

  function resolved(root, schema) {
    var seen = 0;
    while (schema && typeof schema.$ref === 'string' && seen++ < 32) {
      var target = root;
      schema.$ref.replace(/^#\//, '').split('/').forEach(function (segment) {
        target = target ? target[segment] : undefined;
      });
      schema = target;
    }
    return schema && typeof schema === 'object' ? schema : null;
  }

  function branches(root, schema, value) {
    schema = resolved(root, schema);
    if (!schema) {
      return [];
    }
    var tag = schema.discriminator;
    if (tag && value && typeof value === 'object') {
      var ref = tag.mapping[value[tag.propertyName || 'type']];
      if (ref) {
        return [resolved(root, { $ref: ref })].filter(Boolean);
      }
    }
    var all = [schema];
    ['anyOf', 'oneOf', 'allOf'].forEach(function (key) {
      (schema[key] || []).forEach(function (member) {
        all = all.concat(branches(root, member, value));
      });
    });
    return all;
  }

  function childSchemas(schema, key) {
    if (typeof key === 'number') {
      return schema.items && typeof schema.items === 'object' ? [schema.items] : [];
    }
    if (schema.properties && schema.properties[key]) {
      return [schema.properties[key]];
    }
    var patterns = schema.patternProperties || {};
    for (var pattern in patterns) {
      if (new RegExp(pattern).test(key)) {
        return [patterns[pattern]];
      }
    }
    if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
      return [schema.additionalProperties];
    }
    return [];
  }

  function schemasAt(root, json, parts) {
    var current = [root];
    var value = json;
    parts.forEach(function (key) {
      var next = [];
      current.forEach(function (schema) {
        branches(root, schema, value).forEach(function (branch) {
          next = next.concat(childSchemas(branch, key));
        });
      });
      value = value && typeof value === 'object' ? value[key] : undefined;
      current = next;
    });
    var all = [];
    current.forEach(function (schema) {
      all = all.concat(branches(root, schema, value));
    });
    return all;
  }

  function unique(list) {
    return list.filter(function (item, index) {
      return list.indexOf(item) === index;
    });
  }

  function completions(root, json, path, input) {
    if (input === 'field') {
      var parentParts = path.slice(0, -1);
      var parent = parentParts.reduce(function (value, key) {
        return value && typeof value === 'object' ? value[key] : undefined;
      }, json) || {};
      var names = [];
      schemasAt(root, json, parentParts).forEach(function (schema) {
        names = names.concat(Object.keys(schema.properties || {}));
      });
      return unique(names).filter(function (name) {
        return !(name in parent) || name === path[path.length - 1];
      });
    }

    var values = [];
    var nodePattern = root.properties.start.pattern;
    var localePattern = root.properties.default_locale.pattern;
    schemasAt(root, json, path).forEach(function (schema) {
      values = values.concat(schema.enum || []);
      if (schema.const !== undefined) {
        values.push(schema.const);
      }
      if (schema.pattern === nodePattern && json && json.nodes) {
        values = values.concat(Object.keys(json.nodes));
      }
      if (schema.pattern === localePattern && json && Array.isArray(json.locales)) {
        values = values.concat(json.locales);
      }
    });
    return unique(values.filter(function (value) {
      return typeof value === 'string';
    }));
  }

  function placeholder(root, schema) {
    schema = resolved(root, schema) || {};
    var type = schema.type || (branches(root, schema, null)[1] || {}).type;
    return { string: '', integer: 0, number: 0, boolean: false, array: [], object: {} }[type];
  }

  // One "Insert" template per node type, its required fields filled in.
  function nodeTemplates(root) {
    var union = root.properties.nodes.patternProperties;
    var mapping = union[Object.keys(union)[0]].discriminator.mapping;
    return Object.keys(mapping).sort().map(function (type) {
      var schema = resolved(root, { $ref: mapping[type] });
      var value = { type: type };
      (schema.required || []).forEach(function (name) {
        if (name !== 'type') {
          value[name] = placeholder(root, schema.properties[name]);
        }
      });
      return {
        text: 'Node ' + type,
        title: schema.description || type,
        field: 'new_node',
        value: value
      };
    });
  }

  /* The list of problems beside the editor. */

  function problemCount(errors, warnings) {
    if (!errors.length && !warnings.length) {
      return 'No problems.';
    }
    var parts = [];
    if (errors.length) {
      parts.push(errors.length + (errors.length === 1 ? ' error' : ' errors'));
    }
    if (warnings.length) {
      parts.push(warnings.length + (warnings.length === 1 ? ' warning' : ' warnings'));
    }
    return parts.join(', ') + '.';
  }

  function problemItem(problem, severity, onPick) {
    var item = document.createElement('li');
    item.className = 'spec-problem spec-problem--' + severity;
    item.dataset.path = problem.path;
    item.dataset.severity = severity;
    item.tabIndex = 0;
    var where = document.createElement('code');
    where.textContent = problem.path || '(the spec)';
    var what = document.createElement('span');
    what.textContent = problem.message;
    item.appendChild(where);
    item.appendChild(document.createTextNode(' '));
    item.appendChild(what);
    item.addEventListener('click', function () { onPick(problem); });
    item.addEventListener('keydown', function (event) {
      if (event.key === 'Enter') {
        onPick(problem);
      }
    });
    return item;
  }

  function csrfToken(form) {
    var input = form.querySelector('input[name="csrfmiddlewaretoken"]');
    return input ? input.value : '';
  }

  function start() {
    var textarea = document.getElementById('id_draft_spec');
    if (!textarea || !window.JSONEditor || !checkUrl) {
      return;
    }

    var layout = document.createElement('div');
    layout.className = 'spec-editing';
    var container = document.createElement('div');
    container.id = 'spec-editor';
    var side = document.createElement('aside');
    side.className = 'spec-problems-panel';
    var heading = document.createElement('h3');
    heading.textContent = 'Problems';
    var status = document.createElement('p');
    status.id = 'spec-problems-status';
    var list = document.createElement('ul');
    list.id = 'spec-problems';
    side.appendChild(heading);
    side.appendChild(status);
    side.appendChild(list);
    layout.appendChild(container);
    layout.appendChild(side);
    textarea.parentNode.insertBefore(layout, textarea);

    var schema = null;
    var editor = null;
    var timer = null;
    var sequence = 0;
    var inFlight = null;
    var last = { errors: [], warnings: [] };
    var settled = Promise.resolve(last);
    var settle = null;

    function currentText() {
      if (editor.getMode() === 'tree') {
        return JSON.stringify(editor.get(), null, 2);
      }
      return editor.getText();
    }

    function editorErrors() {
      var json;
      try {
        json = editor.get();
      } catch (err) {
        return [];
      }
      var marks = [];
      last.errors.forEach(function (problem) {
        marks.push({ problem: problem, prefix: '' });
      });
      last.warnings.forEach(function (problem) {
        marks.push({ problem: problem, prefix: 'Warning: ' });
      });
      return marks.map(function (mark) {
        var parts = pathParts(mark.problem.path);
        var found = existingParts(json, parts);
        var missing = parts.slice(found.length).join('.');
        return {
          path: found,
          message: mark.prefix + (missing ? missing + ': ' : '') + mark.problem.message
        };
      });
    }

    function show(errors, warnings) {
      list.textContent = '';
      errors.forEach(function (problem) {
        list.appendChild(problemItem(problem, 'error', pick));
      });
      warnings.forEach(function (problem) {
        list.appendChild(problemItem(problem, 'warning', pick));
      });
      status.textContent = problemCount(errors, warnings);
      status.dataset.state = 'done';
    }

    function pick(problem) {
      if (problem.line && editor.getMode() === 'code' && editor.aceEditor) {
        editor.aceEditor.gotoLine(problem.line, (problem.column || 1) - 1, true);
        editor.focus();
        return;
      }
      if (editor.getMode() !== 'tree') {
        return;
      }
      var parts = existingParts(editor.get(), pathParts(problem.path));
      var node = editor.node.findNodeByPath(parts);
      if (node) {
        node.expandTo();
        node.scrollTo();
        node.focus();
      }
    }

    function check() {
      var seq = ++sequence;
      if (inFlight) {
        inFlight.abort();
      }
      inFlight = new AbortController();
      status.textContent = 'Checking…';
      status.dataset.state = 'checking';
      fetch(checkUrl, {
        method: 'POST',
        body: textarea.value,
        credentials: 'same-origin',
        headers: {
          'Content-Type': 'application/json',
          'X-CSRFToken': csrfToken(textarea.form)
        },
        signal: inFlight.signal
      }).then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) {
            throw new Error(body.detail || ('HTTP ' + response.status));
          }
          return body;
        });
      }).then(function (body) {
        if (seq !== sequence) {
          return;
        }
        last = { errors: body.errors, warnings: body.warnings };
        show(last.errors, last.warnings);
        finish();
      }).catch(function (err) {
        if (seq !== sequence || err.name === 'AbortError') {
          return;
        }
        status.textContent = 'The check failed: ' + err.message;
        status.dataset.state = 'failed';
        finish();
      });
    }

    function finish() {
      if (settle) {
        settle(last);
        settle = null;
      }
      settled = Promise.resolve(last);
      // Marks in the editor follow the list (tree mode re-renders them).
      editor.validate();
    }

    function changed() {
      textarea.value = currentText();
      if (!settle) {
        settled = new Promise(function (resolve) { settle = resolve; });
      }
      clearTimeout(timer);
      timer = setTimeout(check, CHECK_DELAY_MS);
    }

    function create() {
      var text = textarea.value;
      var json;
      try {
        json = JSON.parse(text || '{}');
      } catch (err) {
        json = undefined;
      }
      var options = {
        mode: json === undefined ? 'code' : 'tree',
        modes: ['tree', 'code'],
        mainMenuBar: true,
        navigationBar: true,
        statusBar: true,
        enableSort: false,
        enableTransform: false,
        onChange: changed,
        onModeChange: changed,
        onValidate: function () {
          return settled.then(editorErrors);
        }
      };
      if (schema && schema.properties && schema.properties.nodes) {
        options.schema = schema;
        options.ajv = NO_AJV;
        options.templates = nodeTemplates(schema);
        options.autocomplete = {
          filter: 'start',
          trigger: 'keydown',
          getOptions: function (typed, path, input, instance) {
            var current;
            try {
              current = instance.get();
            } catch (err) {
              return [];
            }
            return completions(schema, current, path, input);
          }
        };
      }
      editor = new window.JSONEditor(container, options);
      if (json === undefined) {
        editor.setText(text);
      } else {
        editor.set(json);
      }
      textarea.hidden = true;
      check();
    }

    function createOrKeepTheTextarea() {
      try {
        create();
      } catch (err) {
        // The form works without the editor: keep the plain field.
        if (editor) {
          editor.destroy();
        }
        layout.remove();
        textarea.hidden = false;
        window.console.error('The spec editor could not start:', err);
      }
    }

    fetch(schemaUrl, { credentials: 'same-origin' })
      .then(function (response) { return response.ok ? response.json() : null; })
      .catch(function () { return null; })
      .then(function (body) {
        schema = body;
        createOrKeepTheTextarea();
      });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
