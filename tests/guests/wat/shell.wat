;; The component shell shared by the WAT test guests: it lifts the guest's
;; `$handle` as `handle-message` with the `actor` world's types. A guest file
;; holds core module fields and defines
;;   (func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32))
;; whose parameters are the flattened envelope:
;;   0 sender-is-some, 1 sender-ptr, 2 sender-len, 3 kind (0 tell, 1 request),
;;   4 payload-ptr, 5 payload-len, 6 headers-ptr, 7 headers-len
;; and which returns the address of the result, built with the helpers below.
;; Guests that import host functions fill four more markers (see
;; tests/guests/__init__.py): IMPORTS (component-level imports), LOWER (core
;; funcs lowered from them and a core instance `$host` exporting them),
;; CORE-IMPORTS (the guest module's imports from "host") and WITH. CALLBACK
;; is the core `handle-callback` export, by default one that returns ok:
;;   (func (export "handle-callback") (param i64 i32 i32 i32 i32) (result i32))
;; takes the request id, the result's tag (0 ok) and its payload's three
;; words, and returns the address of a result<_, app-error>.
(component
  ;;@IMPORTS@
  ;; Memory and allocator live in their own core instance, so that host
  ;; functions can be lowered against them before the guest module, which
  ;; imports both the memory and the lowered functions, is instantiated.
  (core module $Mem
    (memory (export "memory") 1)
    ;; A bump allocator reset after every call (post-return).
    (global $heap (mut i32) (i32.const 1024))
    (func $realloc (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
      (global.set $heap (i32.add (local.get $p) (local.get 3)))
      (block $ok (loop $grow
        (br_if $ok (i32.le_u (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
        (br $grow)))
      (local.get $p))
    (func (export "cabi_post_reset") (param i32) (global.set $heap (i32.const 1024))))
  (core instance $mem (instantiate $Mem))
  ;;@LOWER@
  (core module $M
    (import "mem" "memory" (memory 1))
    (import "mem" "cabi_realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    ;;@CORE-IMPORTS@
    ;; ok(some(bytes at ptr..ptr+len))
    (func $reply_some (param $ptr i32) (param $len i32) (result i32)
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store8 (i32.const 20) (i32.const 1))
      (i32.store (i32.const 24) (local.get $ptr))
      (i32.store (i32.const 28) (local.get $len))
      (i32.const 16))
    ;; ok(none)
    (func $reply_none (result i32)
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store8 (i32.const 20) (i32.const 0))
      (i32.const 16))
    ;; err(app-error { message })
    (func $reply_err (param $ptr i32) (param $len i32) (result i32)
      (i32.store8 (i32.const 16) (i32.const 1))
      (i32.store (i32.const 20) (local.get $ptr))
      (i32.store (i32.const 24) (local.get $len))
      (i32.const 16))
    ;;@CALLBACK@
    ;;@GUEST@
    (export "handle-message" (func $handle))
  )
  (core instance $m (instantiate $M (with "mem" (instance $mem)) ;;@WITH@
  ))
  (type $kind (enum "tell" "request"))
  (type $env (record (field "sender" (option string)) (field "kind" $kind) (field "payload" string)
                     (field "headers" (list (tuple string string)))))
  (type $app-error (record (field "message" string)))
  (type $request-error (variant (case "timeout") (case "app-error" string) (case "crashed" string)
                                (case "unknown-recipient" string) (case "stopped" string) (case "mailbox-full" string)))
  (func $hm (param "msg" $env) (result (result (option string) (error $app-error)))
    (canon lift (core func $m "handle-message") (memory (core memory $mem "memory"))
                (realloc (core func $mem "cabi_realloc")) (post-return (core func $mem "cabi_post_reset"))))
  (func $hc (param "id" u64) (param "outcome" (result string (error $request-error)))
            (result (result (error $app-error)))
    (canon lift (core func $m "handle-callback") (memory (core memory $mem "memory"))
                (realloc (core func $mem "cabi_realloc")) (post-return (core func $mem "cabi_post_reset"))))
  ;; Exported types must be named inside the exported instance: a shim
  ;; component re-exports them, as wit-component does.
  (component $Shim
    (type $kind0 (enum "tell" "request"))
    (import "import-type-message-kind" (type $kind (eq $kind0)))
    (type $env0 (record (field "sender" (option string)) (field "kind" $kind) (field "payload" string)
                        (field "headers" (list (tuple string string)))))
    (import "import-type-envelope" (type $env (eq $env0)))
    (type $ae0 (record (field "message" string)))
    (import "import-type-app-error" (type $ae (eq $ae0)))
    (type $re0 (variant (case "timeout") (case "app-error" string) (case "crashed" string)
                        (case "unknown-recipient" string) (case "stopped" string) (case "mailbox-full" string)))
    (import "import-type-request-error" (type $re (eq $re0)))
    (import "import-func-handle-message" (func $hm (param "msg" $env) (result (result (option string) (error $ae)))))
    (import "import-func-handle-callback" (func $hc (param "id" u64) (param "outcome" (result string (error $re)))
                                                    (result (result (error $ae)))))
    (type $kind1 (enum "tell" "request"))
    (export $kind-e "message-kind" (type $kind1))
    (type $env1 (record (field "sender" (option string)) (field "kind" $kind-e) (field "payload" string)
                        (field "headers" (list (tuple string string)))))
    (export $env-e "envelope" (type $env1))
    (type $ae1 (record (field "message" string)))
    (export $ae-e "app-error" (type $ae1))
    (type $re1 (variant (case "timeout") (case "app-error" string) (case "crashed" string)
                        (case "unknown-recipient" string) (case "stopped" string) (case "mailbox-full" string)))
    (export $re-e "request-error" (type $re1))
    (export "handle-message" (func $hm) (func (param "msg" $env-e) (result (result (option string) (error $ae-e)))))
    (export "handle-callback" (func $hc) (func (param "id" u64) (param "outcome" (result string (error $re-e)))
                                               (result (result (error $ae-e)))))
  )
  (instance $handler (instantiate $Shim
    (with "import-func-handle-message" (func $hm))
    (with "import-func-handle-callback" (func $hc))
    (with "import-type-message-kind" (type $kind))
    (with "import-type-envelope" (type $env))
    (with "import-type-app-error" (type $app-error))
    (with "import-type-request-error" (type $request-error))))
  (export "wasmactors:actor/handler@0.1.0" (instance $handler))
)
