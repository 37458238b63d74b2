/// The JavaScript that prepares each fresh global context before the user's code is compiled.
///
/// It runs first, so it captures the built-ins it relies on before user code can replace them; user
/// code that breaks them anyway (say, by redefining `Object.prototype` getters) can only spoil its own
/// result: every limit that matters (time, memory, log and output bytes) is enforced in Swift.
///
/// Called as `bootstrap(native, request, mode, maxOutputBytes, maxLogBytes)`; returns
/// `run(userFunction)`, an async function that reports through `native('ok', itemsJSON)` or
/// `native('fail', kind, message, stack, line, sourceURL)`. `native` never reaches user code.
enum Bootstrap {
    static let sourceURL = "flowstack-code-node-setup"
    /// The name user code is compiled under; stack frames of user code read `name@code:line:column`.
    static let codeURL = "code"
    /// The user's code is compiled as `prefix + code + suffix`, so user line N is script line N + 1.
    static let codePrefix = "(async function () {\n"
    static let codeSuffix = "\n})"
    static let codePrefixLines = 1

    static let source = #"""
    (function (native, request, mode, maxOutputBytes, maxLogBytes) {
      'use strict';
      const G = globalThis;
      const apply = Reflect.apply;
      const defineProperty = Object.defineProperty;
      const freeze = Object.freeze;
      const objectKeys = Object.keys;
      const isArray = Array.isArray;
      const hasOwn = Object.prototype.hasOwnProperty;
      const stringify = JSON.stringify;
      const StringCtor = String;
      const ErrorCtor = Error;
      const RangeErrorCtor = RangeError;
      const TypeErrorCtor = TypeError;
      const stringSlice = String.prototype.slice;

      // Not needed by Code nodes; less engine surface (its compiler) for untrusted code.
      delete G.WebAssembly;

      function isRecord(v) { return v !== null && typeof v === 'object' && !isArray(v); }
      function owns(o, k) { return apply(hasOwn, o, [k]); }
      function setGlobal(name, value) {
        defineProperty(G, name, { value, writable: true, enumerable: false, configurable: true });
      }
      function constant(name, value) {
        defineProperty(G, name, { value, writable: false, enumerable: false, configurable: false });
      }
      function text(v) { return typeof v === 'string' ? v : ''; }
      function typeName(v) {
        if (v === null) return 'null';
        if (v === undefined) return 'undefined';
        if (isArray(v)) return 'an array';
        const t = typeof v;
        return t === 'object' ? 'an object' : 'a ' + t;
      }

      // console.* -> logs. Strings as they are, other values as JSON, else String(value).
      function describe(v) {
        if (typeof v === 'string') return v;
        try {
          if (typeof v === 'function') {
            const name = v.name;
            return '[Function' + (typeof name === 'string' && name !== '' ? ': ' + name : ' (anonymous)') + ']';
          }
          if (v === undefined || typeof v === 'symbol' || typeof v === 'bigint') return StringCtor(v);
          if (v instanceof ErrorCtor) return StringCtor(v);
          const s = stringify(v);
          if (typeof s === 'string') return s;
          return StringCtor(v);
        } catch (e) {
          try { return StringCtor(v); } catch (e2) { return '[value that cannot be printed]'; }
        }
      }
      let logOpen = true;
      function logger(level) {
        return function () {
          if (!logOpen) return;
          let line = '';
          for (let i = 0; i < arguments.length; i++) {
            if (i > 0) line += ' ';
            line += describe(arguments[i]);
            if (line.length > maxLogBytes) { line = apply(stringSlice, line, [0, maxLogBytes + 1]); break; }
          }
          logOpen = native('log', level, line) === true;
        };
      }
      setGlobal('console', freeze({
        log: logger('log'), info: logger('info'), debug: logger('debug'),
        warn: logger('warn'), error: logger('error'), trace: logger('log'),
      }));

      // $env, $execution, $workflow, $node: frozen, read-only globals.
      const env = {};
      if (isRecord(request.env)) {
        const names = objectKeys(request.env);
        for (let i = 0; i < names.length; i++) {
          const value = request.env[names[i]];
          if (typeof value === 'string') defineProperty(env, names[i], { value, enumerable: true });
        }
      }
      constant('$env', freeze(env));
      const info = isRecord(request.context) ? request.context : {};
      constant('$execution', freeze({ id: text(info.executionId) }));
      constant('$workflow', freeze({ id: text(info.workflowId), name: text(info.workflowName) }));
      constant('$node', freeze({ name: text(info.nodeName) }));

      // $http.request: the request is handed to the platform's broker outside the sandbox, which
      // adds the connection's credential and applies the SSRF guard. Only the response comes back.
      const parse = JSON.parse;
      function httpRequest(options) {
        if (!isRecord(options)) throw new TypeErrorCtor('$http.request needs an options object: {url, method, headers, body, connection}');
        const call = {};
        const names = ['connection', 'url', 'method', 'headers', 'body', 'timeout'];
        for (let i = 0; i < names.length; i++) {
          const value = options[names[i]];
          if (value !== undefined) call[names[i]] = value;
        }
        let payload;
        try { payload = stringify(call); } catch (e) { throw new TypeErrorCtor('$http.request options must be JSON: ' + errorText(e)); }
        const answer = parse(native('http', payload));
        if (isRecord(answer) && typeof answer.error === 'string') throw new ErrorCtor(answer.error);
        return answer;
      }
      constant('$http', freeze({ request: async function request(options) { return httpRequest(options); } }));
      // $secret(name): a placeholder the platform fills with a secret of a `secrets` connection,
      // outside the sandbox. It carries this run's nonce, so data from elsewhere cannot ask for one.
      const nonce = text(request.secretNonce);
      constant('$secret', function $secret(name) {
        if (typeof name !== 'string' || name === '') throw new TypeErrorCtor('$secret needs the name of a secret');
        return '{{secret:' + name + ':' + nonce + '}}';
      });

      // Input items, always {json[, binary]}.
      const source = isArray(request.items) ? request.items : [];
      const items = [];
      for (let i = 0; i < source.length; i++) {
        const raw = source[i];
        const item = { json: isRecord(raw) && owns(raw, 'json') ? raw.json : {} };
        if (isRecord(raw) && isRecord(raw.binary)) item.binary = raw.binary;
        items[i] = item;
      }
      function makeInput(current) {
        const input = {
          all: () => items,
          first: () => items[0],
          last: () => items[items.length - 1],
        };
        if (current !== undefined) input.item = current;
        return freeze(input);
      }

      // Output: each returned value becomes {"json":...[,"binary":...]}, serialized here so that the
      // size limit stops a runaway result early (Swift checks the exact UTF-8 size again).
      class OutputProblem { constructor(message) { this.message = message; } }
      let outputUnits = 2;
      function toJSON(value, label) {
        let s;
        try {
          s = stringify(value);
        } catch (e) {
          if (e instanceof RangeErrorCtor && e.message === 'Out of memory') throw e;
          throw new OutputProblem(label + ' could not be converted to JSON: ' + errorText(e));
        }
        if (typeof s !== 'string' || s.charCodeAt(0) !== 123) {
          throw new OutputProblem(label + ' did not convert to a JSON object');
        }
        return s;
      }
      function serialize(value, label) {
        let json = value;
        let binary;
        if (owns(value, 'json')) {
          json = value.json;
          if (!isRecord(json)) throw new OutputProblem(label + ': the "json" property must be an object, not ' + typeName(json));
          binary = value.binary;
          if (binary !== undefined && binary !== null && !isRecord(binary)) {
            throw new OutputProblem(label + ': the "binary" property must be an object, not ' + typeName(binary));
          }
        }
        let out = '{"json":' + toJSON(json, label);
        if (binary !== undefined && binary !== null) out += ',"binary":' + toJSON(binary, label);
        out += '}';
        outputUnits += out.length + 1;
        if (outputUnits > maxOutputBytes) {
          throw new OutputProblem('The output of the Code node is larger than the limit of ' + maxOutputBytes + ' bytes');
        }
        return out;
      }

      async function runAll(fn) {
        setGlobal('items', items);
        setGlobal('$input', makeInput(undefined));
        setGlobal('$json', items.length > 0 ? items[0].json : undefined);
        const result = await fn();
        let list;
        if (isArray(result)) list = result;
        else if (isRecord(result)) list = [result];
        else {
          throw new OutputProblem('The Code node must return an array of objects, but it returned ' + typeName(result)
            + (result === undefined ? ' (is a return statement missing? Return [] for no items)' : ''));
        }
        let out = '[';
        for (let i = 0; i < list.length; i++) {
          const value = list[i];
          if (!isRecord(value)) {
            throw new OutputProblem('The Code node must return an array of objects, but item ' + i + ' is ' + typeName(value));
          }
          out += (i > 0 ? ',' : '') + serialize(value, 'Item ' + i);
        }
        return out + ']';
      }

      async function runEach(fn) {
        let out = '[';
        for (let i = 0; i < items.length; i++) {
          const item = items[i];
          setGlobal('item', item);
          setGlobal('$json', item.json);
          setGlobal('$itemIndex', i);
          setGlobal('$input', makeInput(item));
          const result = await fn();
          if (!isRecord(result)) {
            throw new OutputProblem('In "each" mode the Code node must return an object for every item, but it returned '
              + typeName(result) + ' for item ' + i);
          }
          out += (i > 0 ? ',' : '') + serialize(result, 'Item ' + i);
        }
        return out + ']';
      }

      function errorText(e) {
        try {
          if (e instanceof ErrorCtor) {
            const name = e.name;
            const message = e.message;
            let t = typeof name === 'string' && name !== '' ? name : 'Error';
            if (message !== undefined && message !== null && message !== '') t += ': ' + StringCtor(message);
            return t;
          }
          return describe(e);
        } catch (inner) {
          return 'The Code node threw a value that cannot be described';
        }
      }

      return async function run(fn) {
        let payload;
        try {
          payload = mode === 'each' ? await runEach(fn) : await runAll(fn);
        } catch (e) {
          if (e instanceof OutputProblem) {
            native('fail', 'output', e.message, '', 0, '');
            return;
          }
          let kind = 'runtime';
          let stack = '';
          let line = 0;
          let url = '';
          try {
            if (e instanceof RangeErrorCtor && e.message === 'Out of memory') kind = 'memory';
            if (e !== null && typeof e === 'object') {
              const s = e.stack;
              if (typeof s === 'string') stack = s;
              const l = e.line;
              if (typeof l === 'number') line = l;
              const u = e.sourceURL;
              if (typeof u === 'string') url = u;
            }
          } catch (inner) {}
          native('fail', kind, errorText(e), stack, line, url);
          return;
        }
        native('ok', payload);
      };
    })
    """#
}
