//! The Cedar side: the shipped schema, compiling (parse + validate) a tenant's policy text,
//! and evaluating one request against a compiled set.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use radris_core::TenantId;

use super::{Action, DEFAULT_POLICIES, Decision, MAX_POLICY_TEXT, Resource, SCHEMA, Subject};

/// The policies in force while a tenant's stored policies fail to validate: tenant isolation,
/// and administrators may administer (to repair the policies). Nothing else.
const LOCKDOWN_POLICIES: &str = r#"
@id("tenant-isolation")
forbid (principal, action, resource)
when { resource.tenant != principal.tenant };

@id("lockdown-admin")
permit (
  principal in Radris::Role::"admin",
  action == Radris::Action::"admin",
  resource is Radris::Tenant
);
"#;

/// A validated policy set, ready to evaluate.
pub(crate) struct Compiled {
    set: PolicySet,
    /// Policies annotated `@break_glass`.
    break_glass: HashSet<PolicyId>,
}

impl Compiled {
    pub(crate) fn len(&self) -> usize {
        self.set.num_of_policies()
    }
}

/// What every tenant shares: the schema and its validator, pre-built names, the shipped sets.
pub(crate) struct Base {
    #[cfg_attr(not(test), allow(dead_code))]
    schema: Schema,
    validator: Validator,
    authorizer: Authorizer,
    user_type: EntityTypeName,
    role_type: EntityTypeName,
    study_type: EntityTypeName,
    tenant_type: EntityTypeName,
    /// Indexed by [`Action::index`].
    actions: Vec<EntityUid>,
    context_plain: Context,
    context_break_glass: Context,
    pub(crate) defaults: Arc<Compiled>,
    pub(crate) lockdown: Arc<Compiled>,
}

impl Base {
    /// Load the shipped schema and policies. An error here is a broken build (the tests load
    /// them), reported as text.
    pub(crate) fn new() -> Result<Base, String> {
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA)
            .map_err(|e| format!("the shipped Cedar schema does not load: {e}"))?;
        let type_name = |name: &str| {
            EntityTypeName::from_str(name).map_err(|e| format!("entity type name {name}: {e}"))
        };
        let action_type = type_name("Radris::Action")?;
        let actions = Action::ALL
            .iter()
            .map(|a| {
                EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a.as_str()))
            })
            .collect();
        let context = |on: bool| {
            Context::from_pairs([("break_glass".to_owned(), RestrictedExpression::new_bool(on))])
                .map_err(|e| format!("request context: {e}"))
        };
        let mut base = Base {
            validator: Validator::new(schema.clone()),
            schema,
            authorizer: Authorizer::new(),
            user_type: type_name("Radris::User")?,
            role_type: type_name("Radris::Role")?,
            study_type: type_name("Radris::Study")?,
            tenant_type: type_name("Radris::Tenant")?,
            actions,
            context_plain: context(false)?,
            context_break_glass: context(true)?,
            defaults: Arc::new(Compiled {
                set: PolicySet::new(),
                break_glass: HashSet::new(),
            }),
            lockdown: Arc::new(Compiled {
                set: PolicySet::new(),
                break_glass: HashSet::new(),
            }),
        };
        base.defaults = Arc::new(
            base.compile(DEFAULT_POLICIES)
                .map_err(|m| format!("the shipped default policies: {}", m.join("; ")))?,
        );
        base.lockdown = Arc::new(
            base.compile(LOCKDOWN_POLICIES)
                .map_err(|m| format!("the shipped lockdown policies: {}", m.join("; ")))?,
        );
        Ok(base)
    }

    /// Parse and validate (strict) a tenant's policy text. On failure, every problem found,
    /// as messages fit for the administrator: which policy, which line, what is wrong.
    pub(crate) fn compile(&self, text: &str) -> Result<Compiled, Vec<String>> {
        if text.len() > MAX_POLICY_TEXT {
            return Err(vec![format!(
                "the policy text is {} bytes; at most {MAX_POLICY_TEXT} are accepted",
                text.len()
            )]);
        }
        let parsed = PolicySet::from_str(text).map_err(|errors| {
            errors
                .iter()
                .map(|e| describe(e, None, text))
                .collect::<Vec<_>>()
        })?;
        let mut problems = Vec::new();
        if parsed.templates().next().is_some() {
            problems.push(
                "policy templates (?principal, ?resource) are not supported: write the entity in the policy"
                    .to_owned(),
            );
        }
        // Name each policy by its @id, so that decisions and messages speak the author's words.
        let mut set = PolicySet::new();
        let mut break_glass = HashSet::new();
        for policy in parsed.policies() {
            let id = match policy.annotation("id") {
                Some(id) if !id.trim().is_empty() => PolicyId::new(id.trim()),
                Some(_) => {
                    problems.push(format!("policy {}: @id is empty", policy.id()));
                    continue;
                }
                None => policy.id().clone(),
            };
            if policy.annotation("break_glass").is_some() {
                break_glass.insert(id.clone());
            }
            if let Err(e) = set.add(policy.new_id(id.clone())) {
                problems.push(format!("policy `{id}`: {e} (each @id must be unique)"));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let result = self.validator.validate(&set, ValidationMode::Strict);
        let problems: Vec<String> = result
            .validation_errors()
            .map(|e| describe(e, Some(e.policy_id()), text))
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let compiled = Compiled { set, break_glass };
        self.check_not_locked_out(&compiled)?;
        Ok(compiled)
    }

    /// A set that does not let an administrator administer the tenant would leave nobody able
    /// to repair it.
    fn check_not_locked_out(&self, compiled: &Compiled) -> Result<(), Vec<String>> {
        let tenant = TenantId::default_tenant();
        let admin = Subject {
            tenant: tenant.clone(),
            user: "radris-lockout-check".into(),
            roles: vec!["admin".into()],
            site: String::new(),
        };
        let decision = self.evaluate(
            compiled,
            &admin,
            Action::Admin,
            &Resource::Tenant(tenant),
            false,
        );
        if decision.allowed {
            Ok(())
        } else {
            Err(vec![
                "these policies do not permit a user in Radris::Role::\"admin\" the action Radris::Action::\"admin\" on the tenant; \
                 nobody could change them afterwards"
                    .to_owned(),
            ])
        }
    }

    /// Decide one request. The caller has checked that the resource is in the subject's
    /// tenant and of the kind the action takes.
    pub(crate) fn evaluate(
        &self,
        compiled: &Compiled,
        subject: &Subject,
        action: Action,
        resource: &Resource,
        break_glass: bool,
    ) -> Decision {
        // The entities are built to the schema by construction (a test checks it with the
        // schema), so the per-request schema conformance check is skipped: it costs time.
        let (request, entities) = match self.build(subject, action, resource, break_glass, None) {
            Ok(x) => x,
            Err(e) => {
                return Decision {
                    allowed: false,
                    reasons: Vec::new(),
                    via_break_glass: false,
                    errors: vec![e],
                };
            }
        };
        let response = self
            .authorizer
            .is_authorized(&request, &compiled.set, &entities);
        let allowed = response.decision() == cedar_policy::Decision::Allow;
        let reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        let via_break_glass = allowed
            && break_glass
            && response
                .diagnostics()
                .reason()
                .all(|id| compiled.break_glass.contains(id));
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        if !errors.is_empty() {
            tracing::warn!(
                tenant = %subject.tenant,
                action = action.as_str(),
                errors = errors.len(),
                "policies failed to evaluate (skipped)"
            );
        }
        Decision {
            allowed,
            reasons,
            via_break_glass,
            errors,
        }
    }
    /// The Cedar request and entities (the subject and the resource) of one question.
    pub(crate) fn build(
        &self,
        subject: &Subject,
        action: Action,
        resource: &Resource,
        break_glass: bool,
        schema: Option<&Schema>,
    ) -> Result<(Request, Entities), String> {
        let user_uid = uid(&self.user_type, &subject.user);
        let parents: HashSet<EntityUid> = subject
            .roles
            .iter()
            .map(|r| uid(&self.role_type, r))
            .collect();
        let user = Entity::new(
            user_uid.clone(),
            HashMap::from([
                ("tenant".to_owned(), string(subject.tenant.as_str())),
                ("site".to_owned(), string(&subject.site)),
            ]),
            parents,
        )
        .map_err(|e| e.to_string())?;
        let (resource_uid, resource_entity) = match resource {
            Resource::Study(s) => {
                let id = uid(&self.study_type, s.study_uid.as_str());
                let referrers = RestrictedExpression::new_set(
                    s.referrers
                        .iter()
                        .map(|r| RestrictedExpression::new_entity_uid(uid(&self.user_type, r))),
                );
                let entity = Entity::new(
                    id.clone(),
                    HashMap::from([
                        ("tenant".to_owned(), string(s.tenant.as_str())),
                        ("site".to_owned(), string(&s.site)),
                        ("patient".to_owned(), string(&s.patient)),
                        ("referrers".to_owned(), referrers),
                    ]),
                    HashSet::new(),
                );
                (id, entity)
            }
            Resource::Tenant(t) => {
                let id = uid(&self.tenant_type, t.as_str());
                let entity = Entity::new(
                    id.clone(),
                    HashMap::from([("tenant".to_owned(), string(t.as_str()))]),
                    HashSet::new(),
                );
                (id, entity)
            }
        };
        let resource_entity = resource_entity.map_err(|e| e.to_string())?;
        let entities =
            Entities::from_entities([user, resource_entity], schema).map_err(|e| e.to_string())?;
        let context = if break_glass {
            self.context_break_glass.clone()
        } else {
            self.context_plain.clone()
        };
        let request = Request::new(
            user_uid,
            self.actions[action.index()].clone(),
            resource_uid,
            context,
            schema,
        )
        .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    #[cfg(test)]
    pub(crate) fn schema(&self) -> &Schema {
        &self.schema
    }
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

/// One diagnostic as a line for the administrator: `policy `id` (line L, column C): what (hint)`.
fn describe(d: &dyn miette::Diagnostic, policy: Option<&PolicyId>, text: &str) -> String {
    let offset = d.labels().and_then(|mut l| l.next()).map(|l| l.offset());
    let mut message = d.to_string();
    // cedar's validation messages usually name the policy already
    if let Some(id) = policy
        && !message.contains(&format!("`{id}`"))
    {
        message = format!("policy `{id}`: {message}");
    }
    if let Some(help) = d.help() {
        message.push_str(&format!(" (hint: {help})"));
    }
    describe_at(&message, text, offset)
}

fn describe_at(message: &str, text: &str, offset: Option<usize>) -> String {
    match offset {
        Some(offset) => {
            let (line, column) = line_column(text, offset);
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

/// 1-based line and column (in characters) of a byte offset; clamped to the text.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
