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

          // Object.hasOwn is native; Reflect.apply and Array.isArray are JavaScript built-ins.
          const owns = typeof Object.hasOwn === 'function' ? Object.hasOwn : function (o, k) { return apply(hasOwn, o, [k]); };
          function isRecord(v) { return v !== null && typeof v === 'object' && !isArray(v); }
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
          constant('$execution', freeze({ id: text(info.executionId), resumeUrl: text(info.resumeUrl) }));
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
            // Per item only native checks (see serialize); an array has no own "json" anyway.
            const raw = source[i];
            const record = raw !== null && typeof raw === 'object';
            const item = { json: record && owns(raw, 'json') ? raw.json : {} };
            const binary = record ? raw.binary : undefined;
            if (binary !== undefined && binary !== null && typeof binary === 'object' && !isArray(binary)) item.binary = binary;
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
          // The JSON text of a value, or '' when it has none (undefined, a function).
          function toJSON(value, index) {
            let s;
            try {
              s = stringify(value);
            } catch (e) {
              if (e instanceof RangeErrorCtor && e.message === 'Out of memory') throw e;
              throw new OutputProblem('Item ' + index + ' could not be converted to JSON: ' + errorText(e));
            }
            return typeof s === 'string' ? s : '';
          }
          function shapeProblem(value, index, each) {
            return new OutputProblem(each
              ? 'In "each" mode the Code node must return an object for every item, but it returned ' + typeName(value) + ' for item ' + index
              : 'The Code node must return an array of objects, but item ' + index + ' is ' + typeName(value));
          }
          // A value whose JSON text is not an object: an array, or something whose toJSON gave no object.
          function notAnObject(value, index, each, property) {
            if (isArray(value)) {
              if (property === undefined) return shapeProblem(value, index, each);
              return new OutputProblem('Item ' + index + ': the "' + property + '" property must be an object, not an array');
            }
            return new OutputProblem('Item ' + index + ' did not convert to a JSON object');
          }
          // One returned value as {"json":…[,"binary":…]}. It runs once per item, so on the way through
          // it calls only native functions: every run has a fresh context, and JavaScriptCore compiled
          // small JavaScript helpers called per item (Array.isArray and Reflect.apply are such) with its
          // optimizing JIT again in every run, at more cost than the run itself. Arrays are told apart
          // by their JSON text ("[…"); Array.isArray runs only to word an error.
          function serialize(value, index, each) {
            if (value === null || typeof value !== 'object') throw shapeProblem(value, index, each);
            let json = value;
            let binary;
            if (owns(value, 'json')) {
              json = value.json;
              if (json === null || typeof json !== 'object') {
                throw new OutputProblem('Item ' + index + ': the "json" property must be an object, not ' + typeName(json));
              }
              binary = value.binary;
              if (binary !== undefined && binary !== null && typeof binary !== 'object') {
                throw new OutputProblem('Item ' + index + ': the "binary" property must be an object, not ' + typeName(binary));
              }
            }
            const jsonText = toJSON(json, index);
            if (jsonText.charCodeAt(0) !== 123) throw notAnObject(json, index, each, json === value ? undefined : 'json');
            let out = '{"json":' + jsonText;
            if (binary !== undefined && binary !== null) {
              const binaryText = toJSON(binary, index);
              if (binaryText.charCodeAt(0) !== 123) throw notAnObject(binary, index, each, 'binary');
              out += ',"binary":' + binaryText;
            }
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
              out += (i > 0 ? ',' : '') + serialize(list[i], i, false);
            }
            return out + ']';
          }

          async function runEach(fn) {
            let out = '[';
            for (let i = 0; i < items.length; i++) {
              const item = items[i];
              // defineProperty directly, not through setGlobal: see serialize.
              defineProperty(G, 'item', { value: item, writable: true, enumerable: false, configurable: true });
              defineProperty(G, '$json', { value: item.json, writable: true, enumerable: false, configurable: true });
              defineProperty(G, '$itemIndex', { value: i, writable: true, enumerable: false, configurable: true });
              defineProperty(G, '$input', { value: makeInput(item), writable: true, enumerable: false, configurable: true });
              out += (i > 0 ? ',' : '') + serialize(await fn(), i, true);
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
